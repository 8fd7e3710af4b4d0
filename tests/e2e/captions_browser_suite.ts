/**
 * Live captions in Chromium (issue "Transcription sessions and live
 * captions", item 4): Chromium with a fake microphone (a WAV this suite
 * writes) talks push-to-talk through the demo page with "captions into room"
 * set (`?room=` on the OpenAI route) to the OpenAI stand-in, which
 * transcribes the turn as the next line of its queue and answers with a
 * transcript of its own. Two other pages, signed in as other dev users,
 * follow the room on the second relay instance of the same stack: one as a
 * member over WebSocket (joinRoom), one over SSE (EventSource). Both show the
 * user's and the assistant's captions growing from `caption.delta` and
 * replaced by the final `caption`. Then the talking page transcribes only
 * (`?intent=transcription`): the readers get the user's caption and no
 * answer. Run by captions_browser_test.ts in a child `deno test -A` (see
 * child_suite.ts).
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { toneWav } from "../helpers/pcm.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";
import { readDemo, waitForDemo } from "./demo_page.ts";
import { startTwoRelays } from "./two_relays.ts";

const ROOM = "public:captions";
const CLIP_MS = 1200;
/** What the stand-in transcribes the user's turns as, in order. */
const SAID = ["Hello room, can you read me?", "Only words this time, no answer."];
/** The machine is shared with other test runs: waits are generous. */
const WAIT_MS = 30_000;

interface Caption {
  itemId: string | null;
  role: "user" | "assistant";
  user: string | null;
  text: string;
  final: boolean;
  deltas: number;
  streamed: string;
}

interface DemoState {
  state: string;
  user: string | null;
  received: { type: string; text: string }[];
  transcripts: { user: { itemId: string | null; text: string }[]; assistant: { text: string }[] };
  rooms: { state: string; mode: string; user: string | null; captions: Caption[] };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function waitFor(page: Page, condition: string, timeout = WAIT_MS): Promise<DemoState> {
  return waitForDemo<DemoState>(page, condition, timeout);
}

/** Holds the space bar for a push-to-talk turn. */
async function talk(page: Page): Promise<void> {
  await page.evaluate("document.activeElement?.blur()");
  await page.keyboard.down("Space");
  await sleep(CLIP_MS);
  await page.keyboard.up("Space");
}

/** Connects the talking page to the OpenAI route, and waits for the microphone. */
async function connectTalker(page: Page): Promise<void> {
  await page.selectOption("#route", "/relay");
  await page.selectOption("#token-mode", "protocol");
  await page.click("#connect");
  await waitFor(
    page,
    "d.state === 'open' && d.voice.micOn && d.received.some((m) => m.type === 'session.updated')",
  );
}

Deno.test({
  name: "captions in Chromium: a spoken turn's captions reach readers on another instance, live",
  fn: async (t) => {
    const wavPath = await Deno.makeTempFile({ prefix: "relay-captions-", suffix: ".wav" });
    await Deno.writeFile(wavPath, toneWav(48_000, CLIP_MS, 440));
    const relays = await startTwoRelays();
    const { stack, second } = relays;
    let browser: Browser | undefined;
    try {
      stack.openai!.transcripts.push(...SAID);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          ...CHROMIUM_ARGS,
          "--use-fake-ui-for-media-stream",
          "--use-fake-device-for-media-stream",
          `--use-file-for-fake-audio-capture=${wavPath}`,
        ],
      });
      const open = async (query: Record<string, string>) => {
        const page = await browser!.newPage({ viewport: { width: 1280, height: 1200 } });
        await page.goto(`${stack.demoUrl}?${new URLSearchParams(query)}`);
        await page.waitForSelector("body[data-ready=true]");
        return page;
      };
      // The readers are there first: caption deltas are ephemeral, never kept.
      const member = await open({ as: "reader@example.com", join: ROOM, relay: second.url });
      const follower = await open({ as: "watcher@example.com", follow: ROOM, relay: second.url });
      await waitFor(member, "d.rooms.state === 'joined'");
      await waitFor(follower, "d.rooms.state === 'joined'");
      const talker = await open({ captions: ROOM });
      assert.equal(await talker.inputValue("#captions-room"), ROOM, "?captions= fills the field");
      await connectTalker(talker);

      await t.step("a conversation's turn: the user's and the assistant's captions", async () => {
        await talk(talker);
        const spoken = await waitFor(
          talker,
          "d.transcripts.user[0]?.text && d.received.some((m) => m.type === 'response.done')",
        );
        const answer = spoken.received
          .filter((m) => m.type === "response.output_audio_transcript.done")
          .map((m) => JSON.parse(m.text).transcript as string)[0];
        assert.ok(answer, "the stand-in answered with a transcript");
        assert.equal(spoken.transcripts.user[0]!.text, SAID[0]);
        const finals =
          "d.rooms.captions.filter((c) => c.final).map((c) => c.role).sort().join() === " +
          "'assistant,user'";
        for (const page of [member, follower]) {
          const { rooms } = await waitFor(page, finals);
          const user = rooms.captions.find((c) => c.role === "user")!;
          const assistant = rooms.captions.find((c) => c.role === "assistant")!;
          assert.equal(user.text, SAID[0]);
          assert.equal(assistant.text, answer);
          // It grew live from the deltas before the final caption replaced it.
          assert.ok(user.deltas > 0 && assistant.deltas > 0, JSON.stringify(rooms.captions));
          assert.equal(user.streamed, user.text);
          assert.equal(assistant.streamed, assistant.text);
          assert.equal(user.itemId, spoken.transcripts.user[0]!.itemId);
          // From the talking user: the Connection panel shows "<email> (<id's start>…)".
          assert.match(
            await talker.textContent("#user") ?? "",
            new RegExp(`^dev@example\\.com \\(${user.user!.slice(0, 8)}…\\)$`),
          );
          assert.notEqual(user.user, rooms.user, "the reader is another user");
          assert.equal(
            await page.textContent("#room-captions .caption.user.final .text"),
            SAID[0],
          );
          assert.equal(
            await page.textContent("#room-captions .caption.assistant.final .text"),
            answer,
          );
        }
        console.log(
          `  captions: user "${SAID[0]}" and assistant "${answer.slice(0, 40)}…" on both readers`,
        );
      });

      await t.step("transcribe only: the readers get the user's caption, no answer", async () => {
        await talker.click("#disconnect");
        await waitFor(talker, "d.state === 'closed'");
        await talker.check("#transcribe-only");
        await connectTalker(talker);
        const session = (await readDemo<DemoState>(talker)).received
          .find((m) => m.type === "session.created");
        assert.equal(JSON.parse(session!.text).session.type, "transcription");
        await talk(talker);
        const done = await waitFor(
          talker,
          "d.received.some((m) => m.type === 'conversation.item.input_audio_transcription.completed')",
        );
        assert.ok(
          !done.received.some((m) => m.type === "response.created" || m.type === "error"),
          "no answer asked for, nothing refused",
        );
        for (const page of [member, follower]) {
          const { rooms } = await waitFor(
            page,
            `d.rooms.captions.some((c) => c.final && c.text === ${JSON.stringify(SAID[1])})`,
          );
          assert.equal(rooms.captions.filter((c) => c.role === "assistant").length, 1);
        }
        assert.match(
          await member.textContent("#room-captions") ?? "",
          new RegExp(SAID[1]!.replace(/[.,?]/g, "\\$&")),
        );
      });
      const screenshot = Deno.env.get("RELAY_CAPTIONS_SCREENSHOT");
      if (screenshot) await member.locator("#rooms").screenshot({ path: screenshot });
    } finally {
      await browser?.close();
      await relays.close();
      await Deno.remove(wavPath).catch(() => {});
    }
  },
});
