// Threads through matrix-js-sdk with thread support on, as Element enables it when the
// server advertises v1.4: replies sent into a thread, the room's thread list read back
// from GET /_matrix/client/v1/rooms/{roomId}/threads, and the thread summary the server
// bundles with the root.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Scenario, sdk, waitUntil } from "../lib/harness.js";

const { Direction, FeatureSupport, KnownMembership, THREAD_RELATION_TYPE } = sdk;

test("reply in a thread, then list the room's threads", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice", { crypto: false, threads: true });
    const bob = await s.login("bob", { crypto: false, threads: true });

    const roomId = await s.step("alice: room with bob", async () => {
        const { room_id } = await alice.createRoom({ preset: "public_chat" });
        await bob.joinRoom(room_id);
        await waitUntil("alice sees bob join", () => alice.getRoom(room_id)?.getMember(bob.getUserId())?.membership === KnownMembership.Join);
        return room_id;
    });

    const { event_id: rootId } = await s.step("alice: a message to start a thread on", () =>
        alice.sendMessage(roomId, { msgtype: "m.text", body: "Threads, anyone?" }),
    );
    const { event_id: otherRoot } = await s.step("alice: a second thread root", () =>
        alice.sendMessage(roomId, { msgtype: "m.text", body: "Another topic" }),
    );
    for (const [root, body] of [
        [rootId, "first reply"],
        [otherRoot, "a reply elsewhere"],
        [rootId, "second reply"],
    ]) {
        // Sent without the SDK's local echo: when a thread reply's remote echo comes down
        // /sync before the send's own answer (as on any server that wakes syncs first, as
        // Synapse does), matrix-js-sdk throws "updatePendingEventStatus called on an event
        // which is not a local echo" from inside sendMessage. What is tested here is the
        // listing and the summary, not the SDK's send queue.
        await s.step(`bob: replies in thread (${body})`, () =>
            bob.http.authedRequest("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${encodeURIComponent(body)}`, undefined, {
                msgtype: "m.text",
                body,
                "m.relates_to": { rel_type: THREAD_RELATION_TYPE.name, event_id: root, is_falling_back: true },
            }),
        );
    }

    await s.step("alice: the SDK sees stable threads and thread listing (v1.4 in /versions)", async () => {
        const support = await alice.doesServerSupportThread();
        assert.equal(support.threads, FeatureSupport.Stable);
        assert.equal(support.list, FeatureSupport.Stable);
    });

    const threads = await s.step("alice: GET /rooms/{id}/threads through the SDK", async () => {
        const response = await alice.createThreadListMessagesRequest(roomId, null, 10, Direction.Backward);
        return response.chunk;
    });
    // The server lists the most recently active thread first; the SDK hands the page over
    // reversed, as it does /messages pages, oldest first.
    assert.deepEqual(threads.map((e) => e.event_id), [otherRoot, rootId]);
    const summary = threads[1].unsigned["m.relations"]["m.thread"];
    assert.equal(summary.count, 2);
    assert.equal(summary.latest_event.content.body, "second reply");
    assert.equal(summary.current_user_participated, true, "alice started the thread");

    await s.step("alice: the room model fetches its threads and shows the thread's replies", async () => {
        const room = alice.getRoom(roomId);
        await room.fetchRoomThreads();
        await waitUntil("the thread of the first root", () => room.getThread(rootId)?.length === 2);
        const thread = room.getThread(rootId);
        await waitUntil("its latest reply", () => thread.replyToEvent?.getContent().body === "second reply");
    });

    s.assertNoUnexpectedFailures();
});
