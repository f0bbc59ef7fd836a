// Two pages and the test's bots in one room (tests/browser.rs,
// two_pages_and_bots_share_a_room).
//
// args: { base, room, bots: [entity ids], holdMs, settleMs, deadlineMs, userDataDir }
// steps: "joined" { pages: [{ entityId, playerId }] } -> once its bots see both avatars,
//        the test answers { keys: [key code for page 0, for page 1] }, keys that move
//        each avatar away from the nearest wall;
//        "settled" -> the test answers {} after reading where its bots see the avatars.
// result: { pages: [{ entityId, playerId, joined, before, after, canvas, errors, ... }] }

import { args, canvasStats, holdKey, hook, openPage, playing, run, sleep, step, until } from "./lib.mjs";

run(async (browser) => {
  const url = (name) =>
    `${args.base}/?room=${encodeURIComponent(args.room)}&name=${name}&autojoin=1`;
  const pages = [await openPage(browser, url("ada")), await openPage(browser, url("bob"))];
  await Promise.all(pages.map(playing));
  const joined = await Promise.all(pages.map(hook));
  const { keys } = await step("joined", { pages: joined.map((j) => ({ entityId: j.entityId, playerId: j.playerId })) });

  // Each page waits until it draws every bot and the other page's avatar.
  await Promise.all(
    pages.map((page, i) =>
      until(
        page,
        `page ${i} draws every avatar`,
        (want) => {
          const ids = new Set(window.tickcastPage.entities().map((e) => e.id));
          return want.every((id) => ids.has(id));
        },
        [...args.bots, joined[1 - i].entityId],
      ),
    ),
  );
  const before = await Promise.all(pages.map(hook));
  // Both pages hold their key at the same time, each in its own window.
  const held = await Promise.all(pages.map((page, i) => holdKey(page, keys[i], args.holdMs)));
  await sleep(args.settleMs);
  const after = await Promise.all(pages.map(hook));
  await step("settled");
  const canvas = await Promise.all(pages.map(canvasStats));
  await sleep(300);
  const canvasLater = await Promise.all(pages.map(canvasStats));
  return {
    pages: pages.map((page, i) => ({
      joined: joined[i],
      before: before[i],
      after: after[i],
      held: held[i],
      canvas: canvas[i],
      canvasLater: canvasLater[i],
      errors: page.errors,
      consoleErrors: page.consoleErrors,
    })),
  };
});
