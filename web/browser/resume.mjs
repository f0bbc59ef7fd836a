// A page whose TCP connection is cut resumes the same player
// (tests/browser.rs, a_cut_page_resumes_the_same_entity).
//
// The page is loaded through the test's TCP proxy (`base`), so its WebSocket, opened to
// the host it came from, goes through the proxy too, and is same-origin for the server.
//
// args: { base, room, holdMs, deadlineMs, userDataDir }
// steps: "joined" { entityId, playerId } -> the test cuts every proxied connection and
//        answers {};
//        "resumed" { entityId } -> the test answers { key } once its bot sees the avatar
//        again (a key that moves it away from the nearest wall);
// result: { joined, resumed, moved, held, states, banners, errors, consoleErrors }

import { args, hook, holdKey, openPage, playing, recordStates, run, sleep, states, step, until } from "./lib.mjs";

run(async (browser) => {
  const page = await openPage(
    browser,
    `${args.base}/?room=${encodeURIComponent(args.room)}&name=cut&autojoin=1`,
  );
  await playing(page);
  await recordStates(page);
  const joined = await hook(page);
  await step("joined", { entityId: joined.entityId, playerId: joined.playerId });
  await until(
    page,
    "resumed after the cut",
    () => {
      const t = window.tickcastPage;
      return t.reconnects >= 1 && t.state === "playing" && t.ownPosition() != null;
    },
  );
  const resumed = await hook(page);
  const { key } = await step("resumed", { entityId: resumed.entityId });
  const held = await holdKey(page, key, args.holdMs);
  await sleep(300);
  const moved = await hook(page);
  const seen = await states(page);
  return {
    joined,
    resumed,
    moved,
    held,
    ...seen,
    errors: page.errors,
    consoleErrors: page.consoleErrors,
  };
});
