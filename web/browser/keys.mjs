// A page holds a key; the test's bot watches the page's avatar
// (tests/browser.rs, a_held_key_moves_the_avatar_as_a_bot_sees).
//
// args: { base, room, holdMs, settleMs, deadlineMs, userDataDir }
// steps: "joined" { entityId, playerId } -> the test answers { key } once its bot sees the
//        avatar standing still (the key moves it away from the nearest wall);
//        "released" { held } -> the test answers {} once its bot sees the avatar stop.
// result: { joined, before, after, held, errors, consoleErrors }

import { args, hook, holdKey, openPage, playing, run, sleep, step } from "./lib.mjs";

run(async (browser) => {
  const page = await openPage(
    browser,
    `${args.base}/?room=${encodeURIComponent(args.room)}&name=keys&autojoin=1`,
  );
  await playing(page);
  const joined = await hook(page);
  const { key } = await step("joined", { entityId: joined.entityId, playerId: joined.playerId });
  const before = await hook(page);
  const held = await holdKey(page, key, args.holdMs);
  await step("released", { held });
  await sleep(args.settleMs);
  const after = await hook(page);
  return { joined, before, after, held, errors: page.errors, consoleErrors: page.consoleErrors };
});
