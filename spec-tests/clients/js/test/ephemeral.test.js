// Typing notifications and read receipts, sent by one matrix-js-sdk client and seen by the
// other through /sync's ephemeral events, as Element shows them.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Scenario, sdk, waitForEmit, waitUntil } from "../lib/harness.js";

const { RoomEvent, RoomMemberEvent, KnownMembership, ReceiptType } = sdk;

async function sharedRoom(s, alice, bob) {
    const roomId = await s.step("alice: POST /createRoom with bob invited", async () => {
        const { room_id } = await alice.createRoom({ name: "ephemeral", preset: "private_chat", invite: [bob.getUserId()] });
        return room_id;
    });
    await s.step("bob: sees the invite and joins", async () => {
        await waitUntil("bob's invite", () => bob.getRoom(roomId)?.getMyMembership() === KnownMembership.Invite);
        await bob.joinRoom(roomId);
        await waitUntil("both clients to see two joined members", () =>
            [alice, bob].every((c) => c.getRoom(roomId)?.getJoinedMemberCount() === 2),
        );
    });
    return roomId;
}

test("typing notifications are seen by the other client", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice", { crypto: false });
    const bob = await s.login("bob", { crypto: false });
    const roomId = await sharedRoom(s, alice, bob);

    const typing = (on) =>
        waitForEmit(
            bob,
            RoomMemberEvent.Typing,
            (_event, member) => member.roomId === roomId && member.userId === alice.getUserId() && member.typing === on,
            `bob: RoomMemberEvent.Typing typing=${on} for alice (m.typing in rooms.join.*.ephemeral)`,
        );
    const started = typing(true);
    await s.step("alice: PUT /rooms/{id}/typing/{me} typing=true", () => alice.sendTyping(roomId, true, 30_000));
    await s.step("bob: sees alice typing", () => started);
    assert.deepEqual(
        bob.getRoom(roomId).getMembers().filter((m) => m.typing).map((m) => m.userId),
        [alice.getUserId()],
        "only alice is typing",
    );

    const stopped = typing(false);
    await s.step("alice: PUT /rooms/{id}/typing/{me} typing=false", () => alice.sendTyping(roomId, false));
    await s.step("bob: sees alice stop typing", () => stopped);

    await s.step("typing times out on the server", async () => {
        const again = typing(true);
        await alice.sendTyping(roomId, true, 1_000);
        await again;
        const timedOut = waitForEmit(
            bob,
            RoomMemberEvent.Typing,
            (_e, m) => m.roomId === roomId && m.userId === alice.getUserId() && !m.typing,
            "bob: alice's typing to end by itself after its 1 s timeout",
            8_000,
        );
        await timedOut;
    });

    s.assertNoUnexpectedFailures();
});

test("read receipts are seen by the other client", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice", { crypto: false });
    const bob = await s.login("bob", { crypto: false });
    const roomId = await sharedRoom(s, alice, bob);

    const arrived = waitForEmit(
        bob,
        RoomEvent.Timeline,
        (event, room) => room?.roomId === roomId && event.getContent().body === "please read me",
        "bob: alice's message in the timeline",
    );
    const { event_id } = await s.step("alice: sends a message", () => alice.sendTextMessage(roomId, "please read me"));
    const [event] = await s.step("bob: receives it", () => arrived);

    await s.step("bob: the server counts the message as a notification (unread_notifications)", () =>
        waitUntil("bob's notification count for the room to be 1", () => bob.getRoom(roomId).getUnreadNotificationCount() === 1),
    );

    const aliceSeesReceipt = waitForEmit(
        alice,
        RoomEvent.Receipt,
        (receiptEvent, room) =>
            room.roomId === roomId && receiptEvent.getContent()[event_id]?.[ReceiptType.Read]?.[bob.getUserId()] !== undefined,
        "alice: RoomEvent.Receipt with bob's m.read on her message (m.receipt in ephemeral)",
    );
    await s.step("bob: POST /rooms/{id}/receipt/m.read/{eventId}", () => bob.sendReadReceipt(event, ReceiptType.Read));
    await s.step("alice: sees bob's read receipt", () => aliceSeesReceipt);
    await s.step("alice: room model says bob read up to the message", async () => {
        const room = alice.getRoom(roomId);
        assert.equal(room.getEventReadUpTo(bob.getUserId()), event_id, "getEventReadUpTo(bob)");
        assert.ok(room.getUsersReadUpTo(room.findEventById(event_id)).includes(bob.getUserId()), "getUsersReadUpTo(message)");
    });

    await s.step("bob: POST /rooms/{id}/read_markers (fully read + private receipt)", async () => {
        await bob.setRoomReadMarkers(roomId, event_id, event, event);
        const markers = await waitUntil("m.fully_read in bob's room account data", () =>
            bob.getRoom(roomId).getAccountData("m.fully_read")?.getContent().event_id === event_id,
        );
        assert.ok(markers);
    });

    await s.step("bob: the notification count drops to zero after the receipt", async () => {
        await waitUntil("bob's notification count for the room to be 0", () =>
            (bob.getRoom(roomId).getUnreadNotificationCount() ?? 0) === 0,
        );
    });

    s.assertNoUnexpectedFailures();
});
