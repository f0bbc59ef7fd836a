// A page in a room of many NPCs, measured (tests/browser.rs, a_page_draws_a_crowd).
//
// args: { base, room, entities, sampleMs, deadlineMs, userDataDir }
// steps: "drawing" { entityCount } -> once the page draws `entities` entities, the
//        test starts its bot's measurement and answers {}; the page is then sampled
//        every 250 ms for `sampleMs`;
//        "sampled" -> the test ends its bot's measurement and answers {}.
// result: { joined, last, samples: [{ frameMs, bytesPerSec, snapshotsPerSec, frames }],
//           frameMs, bytesPerSec, snapshotsPerSec (medians), canvas, errors, consoleErrors }

import { args, canvasStats, hook, median, openPage, playing, run, sleep, step, until } from "./lib.mjs";

run(async (browser) => {
  const page = await openPage(
    browser,
    `${args.base}/?room=${encodeURIComponent(args.room)}&name=crowd&autojoin=1`,
  );
  await playing(page);
  const joined = await hook(page);
  await until(
    page,
    `drawing ${args.entities} entities`,
    (n) => window.tickcastPage.entityCount === n && window.tickcastPage.entities().length === n,
    args.entities,
  );
  await step("drawing", { entityCount: args.entities });
  const samples = [];
  const end = performance.now() + args.sampleMs;
  while (performance.now() < end) {
    await sleep(250);
    samples.push(
      await page.evaluate(() => {
        const t = window.tickcastPage;
        return {
          frameMs: t.frameMs,
          bytesPerSec: t.bytesPerSec,
          snapshotsPerSec: t.snapshotsPerSec,
          frames: t.frames,
        };
      }),
    );
  }
  await step("sampled");
  const last = await hook(page);
  const canvas = await canvasStats(page);
  return {
    joined: { entityId: joined.entityId, playerId: joined.playerId },
    last: { ...last, entities: undefined, entitiesLength: last.entities.length,
            npcs: last.entities.filter((e) => e.kind === "Npc").length },
    samples,
    frameMs: median(samples.map((s) => s.frameMs)),
    bytesPerSec: median(samples.map((s) => s.bytesPerSec)),
    snapshotsPerSec: median(samples.map((s) => s.snapshotsPerSec)),
    canvas,
    errors: page.errors,
    consoleErrors: page.consoleErrors,
  };
});
