// A page from another origin opens WebSockets to tickcast servers
// (tests/browser.rs, a_page_from_another_origin_is_refused).
//
// The page at `page` is the test's own (served from a port of its own, so another
// origin than any server's): for each `ws` query parameter it opens a WebSocket with the
// tickcast subprotocol and records in `window.results` whether it opened, errored, and
// the close code.
//
// args: { page, deadlineMs, userDataDir }
// result: { results: [{ url, opened, error, code, protocol }], origin, errors }

import { args, openPage, run, until } from "./lib.mjs";

run(async (browser) => {
  const page = await openPage(browser, args.page);
  const results = await until(
    page,
    "every WebSocket closed",
    () => window.results?.length > 0 && window.results.every((r) => r.code !== null) && window.results,
  );
  const origin = await page.evaluate(() => location.origin);
  return { results, origin, errors: page.errors };
});
