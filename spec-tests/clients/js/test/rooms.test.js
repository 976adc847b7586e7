// Two matrix-js-sdk clients: create a room, invite, join, and talk; everything each client
// learns arrives through /sync and the SDK's timeline events, as in Element.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Scenario, sdk, waitForEmit, waitUntil } from "../lib/harness.js";

const { RoomEvent, RoomMemberEvent, KnownMembership } = sdk;

test("create a room, invite, join, send and receive messages", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice");
    const bob = await s.login("bob");

    // Bob learns about the invite from /sync (rooms.invite with stripped state).
    const bobInvited = waitForEmit(
        bob,
        RoomEvent.MyMembership,
        (room, membership) => membership === KnownMembership.Invite,
        "bob: RoomEvent.MyMembership invite (rooms.invite in /sync)",
    );
    const roomId = await s.step("alice: POST /createRoom", async () => {
        const { room_id } = await alice.createRoom({ name: "Myelin test room", topic: "made by matrix-js-sdk", preset: "private_chat" });
        return room_id;
    });
    await s.step("alice: the new room appears through /sync", () =>
        waitUntil("alice's client to have the room with her as joined member", () =>
            alice.getRoom(roomId)?.getMyMembership() === KnownMembership.Join,
        ),
    );
    await s.step("alice: POST /rooms/{id}/invite", () => alice.invite(roomId, bob.getUserId()));
    const [invitedRoom] = await s.step("bob: sees the invite", () => bobInvited);
    assert.equal(invitedRoom.roomId, roomId);
    await s.step("bob: invite carries stripped state (room name, inviter)", async () => {
        await waitUntil("the invited room's name from stripped state", () => invitedRoom.name === "Myelin test room");
        const inviter = invitedRoom.getMember(bob.getUserId())?.events.member?.getSender();
        assert.equal(inviter, alice.getUserId(), "sender of bob's invite member event");
    });

    const aliceSeesJoin = waitForEmit(
        alice,
        RoomMemberEvent.Membership,
        (_event, member) => member.roomId === roomId && member.userId === bob.getUserId() && member.membership === KnownMembership.Join,
        "alice: RoomMemberEvent.Membership for bob's join",
    );
    await s.step("bob: POST /join/{roomId}", () => bob.joinRoom(roomId));
    await s.step("bob: joined room state through /sync", () =>
        waitUntil("bob's client to have joined the room with its state", () => {
            const room = bob.getRoom(roomId);
            return room?.getMyMembership() === KnownMembership.Join && room.currentState.getStateEvents("m.room.topic", "")?.getContent().topic === "made by matrix-js-sdk";
        }),
    );
    await s.step("alice: sees bob join", () => aliceSeesJoin);

    await s.step("GET /rooms/{id}/joined_members and /members", async () => {
        const joined = await alice.getJoinedRoomMembers(roomId);
        assert.deepEqual(Object.keys(joined.joined).sort(), [alice.getUserId(), bob.getUserId()].sort());
        const members = await bob.members(roomId);
        assert.equal(members.chunk.filter((e) => e.content.membership === "join").length, 2);
    });

    // Messages both ways, seen as RoomEvent.Timeline on the other client.
    for (const [from, to, body] of [
        [alice, bob, "Hello Bob, from matrix-js-sdk"],
        [bob, alice, "Hi Alice, I read you"],
        [alice, bob, "Third message: ünïcödé ✓ and <b>markup</b>"],
    ]) {
        const who = `${from.getUserId()} → ${to.getUserId()}`;
        const received = waitForEmit(
            to,
            RoomEvent.Timeline,
            (event, room, toStart) => room?.roomId === roomId && !toStart && event.getType() === "m.room.message" && event.getContent().body === body,
            `${to.getUserId()}: RoomEvent.Timeline with "${body}"`,
        );
        const { event_id } = await s.step(`${who}: PUT /rooms/{id}/send/m.room.message/{txnId}`, () =>
            from.sendMessage(roomId, { msgtype: "m.text", body }),
        );
        const [event] = await s.step(`${who}: message arrives by /sync`, () => received);
        assert.equal(event.getId(), event_id, "received event id = id returned by /send");
        assert.equal(event.getSender(), from.getUserId());
        assert.ok(event.getTs() > 0, "origin_server_ts");
        await s.step(`${who}: sender's local echo replaced by the remote echo`, () =>
            waitUntil("the sent event to be in the sender's live timeline under its real id", () =>
                from.getRoom(roomId).getLiveTimeline().getEvents().some((e) => e.getId() === event_id && e.status === null),
            ),
        );
    }

    await s.step("timelines agree on the order", async () => {
        const bodies = (c) =>
            c.getRoom(roomId).getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body);
        assert.deepEqual(bodies(alice), bodies(bob));
        assert.equal(bodies(alice).length, 3);
    });

    await s.step("carol: joins late and paginates back with /messages to the room's creation", async () => {
        const carol = await s.login("carol", { crypto: false });
        await alice.invite(roomId, carol.getUserId());
        await waitUntil("carol to see the invite", () => carol.getRoom(roomId)?.getMyMembership() === KnownMembership.Invite);
        // Carol joins and scrolls back until she reaches the room's creation.
        await carol.joinRoom(roomId);
        await waitUntil("carol's join to sync", () => carol.getRoom(roomId)?.getMyMembership() === KnownMembership.Join);
        const room = carol.getRoom(roomId);
        for (let i = 0; i < 10 && room.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS); i++) {
            await carol.scrollback(room, 30);
        }
        const types = room.getLiveTimeline().getEvents().map((e) => e.getType());
        assert.ok(types.includes("m.room.create"), `scrollback reached m.room.create (got ${types.join(", ")})`);
        assert.equal(room.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message").length, 3);
    });

    await s.step("alice: sets the room name; bob's client shows it", async () => {
        const renamed = waitForEmit(bob, RoomEvent.Name, (room) => room.roomId === roomId && room.name === "Renamed by Alice", "bob: RoomEvent.Name");
        await alice.setRoomName(roomId, "Renamed by Alice");
        await renamed;
    });

    await s.step("bob: leaves; alice sees it", async () => {
        const left = waitForEmit(
            alice,
            RoomMemberEvent.Membership,
            (_e, m) => m.roomId === roomId && m.userId === bob.getUserId() && m.membership === KnownMembership.Leave,
            "alice: RoomMemberEvent.Membership leave for bob",
        );
        const bobLeft = waitForEmit(bob, RoomEvent.MyMembership, (room, m) => room.roomId === roomId && m === KnownMembership.Leave, "bob: own leave through /sync (rooms.leave)");
        await bob.leave(roomId);
        await left;
        await bobLeft;
    });

    s.assertNoUnexpectedFailures();
});
