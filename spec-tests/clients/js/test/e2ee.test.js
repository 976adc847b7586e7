// An encrypted direct message the way Element makes one: both clients run the SDK's Rust
// crypto; Alice creates a trusted_private_chat DM with m.room.encryption, Bob joins, and
// each message is Megolm-encrypted by the sender and decrypted by the receiver. Along the
// way the server must carry device keys, one-time key claims, to-device messages and
// device-list changes correctly, and never sees the plaintext.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Scenario, sdk, waitUntil } from "../lib/harness.js";

const { KnownMembership, EventType } = sdk;

/** The decrypted event with this body in the client's live timeline, or a clear failure. */
async function decryptedMessage(client, roomId, body, what) {
    let lastFailure = null;
    const event = await waitUntil(
        what,
        () => {
            const events = client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
            for (const e of events) {
                if (!e.isEncrypted()) continue;
                if (e.isDecryptionFailure()) lastFailure = `${e.getId()}: ${e.decryptionFailureReason} ${e.getContent().body ?? ""}`;
                if (e.getType() === EventType.RoomMessage && e.getContent().body === body) return e;
            }
            return null;
        },
        15_000,
    ).catch((error) => {
        throw new Error(`${error.message}${lastFailure ? `; last decryption failure: ${lastFailure}` : "; no encrypted event failed to decrypt"}`);
    });
    return event;
}

test("encrypted DM: both clients with Rust crypto exchange and decrypt messages", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice");
    const bob = await s.login("bob");

    // Element only encrypts a new DM when every invitee has published device keys.
    await s.step("alice: finds bob's device keys (POST /keys/query)", async () => {
        const devices = await waitUntil("bob's device in alice's key query", async () => {
            const map = await alice.getCrypto().getUserDeviceInfo([bob.getUserId()], true);
            return map.get(bob.getUserId())?.get(bob.getDeviceId());
        });
        assert.equal(devices.deviceId, bob.getDeviceId());
    });

    const roomId = await s.step("alice: POST /createRoom (trusted_private_chat, is_direct, m.room.encryption)", async () => {
        const { room_id } = await alice.createRoom({
            preset: sdk.Preset.TrustedPrivateChat,
            is_direct: true,
            invite: [bob.getUserId()],
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
        });
        return room_id;
    });
    await s.step("alice: PUT /user/{me}/account_data/m.direct", async () => {
        await alice.setAccountData(EventType.Direct, { [bob.getUserId()]: [roomId] });
        await waitUntil("m.direct to come back through /sync", () => alice.getAccountData(EventType.Direct)?.getContent()[bob.getUserId()]?.[0] === roomId);
    });

    await s.step("bob: gets the invite as a DM (is_direct in the invite's member content)", async () => {
        await waitUntil("bob's invite", () => bob.getRoom(roomId)?.getMyMembership() === KnownMembership.Invite);
        const room = bob.getRoom(roomId);
        assert.equal(room.getDMInviter(), alice.getUserId(), "room.getDMInviter() (needs is_direct: true on bob's invite)");
    });
    await s.step("bob: joins", async () => {
        await bob.joinRoom(roomId);
        await waitUntil("both clients to see two joined members and encryption on", async () =>
            [alice, bob].every((c) => c.getRoom(roomId)?.getJoinedMemberCount() === 2) &&
            (await alice.getCrypto().isEncryptionEnabledInRoom(roomId)) &&
            (await bob.getCrypto().isEncryptionEnabledInRoom(roomId)),
        );
    });

    const conversation = [
        [alice, bob, "Secret from Alice: the cake is a lie 🎂"],
        [bob, alice, "Secret from Bob: I knew it"],
        [alice, bob, "Second Megolm message in the same session"],
    ];
    for (const [from, to, body] of conversation) {
        const who = `${from.getUserId()} → ${to.getUserId()}`;
        await s.step(
            `${who}: encrypt and send (members, /keys/query, /keys/claim, /sendToDevice, PUT /send/m.room.encrypted)`,
            () => from.sendMessage(roomId, { msgtype: "m.text", body }),
        );
        const event = await s.step(`${who}: receiver decrypts (to-device room key in /sync, then Megolm)`, () =>
            decryptedMessage(to, roomId, body, `${to.getUserId()} to decrypt "${body}"`),
        );
        assert.equal(event.getWireType(), "m.room.encrypted");
        assert.equal(event.getSender(), from.getUserId());
    }

    await s.step("the server stored only ciphertext (GET /rooms/{id}/messages)", async () => {
        const response = await alice.createMessagesRequest(roomId, null, 20, sdk.Direction.Backward);
        const messages = response.chunk.filter((e) => e.type === "m.room.encrypted");
        assert.equal(messages.length, conversation.length, "encrypted events in the room");
        const raw = JSON.stringify(response.chunk);
        for (const [, , body] of conversation) assert.ok(!raw.includes(body.slice(0, 12)), "plaintext on the server");
        assert.ok(!response.chunk.some((e) => e.type === "m.room.message"), "no unencrypted message");
    });

    await s.step("bob's device is known to alice's crypto as bob's (device lists)", async () => {
        const map = await alice.getCrypto().getUserDeviceInfo([bob.getUserId()]);
        assert.ok(map.get(bob.getUserId())?.get(bob.getDeviceId()), "bob's device in alice's store");
    });

    s.assertNoUnexpectedFailures();
});

test("cross-signing bootstrap through user-interactive auth, and a key backup", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice");
    const bob = await s.login("bob");
    const crypto = alice.getCrypto();

    // As Element's InteractiveAuth does: try without auth; on 401 read the flows and the
    // session, then answer with the password.
    const challenges = [];
    const uia = async (makeRequest) => {
        let session;
        try {
            await makeRequest(null);
            return;
        } catch (error) {
            const flows = error.data?.flows ?? [];
            assert.equal(error.httpStatus, 401, `first attempt answers 401 (got ${error.httpStatus} ${error.message})`);
            assert.ok(flows.some((f) => f.stages?.includes("m.login.password")), `UIA offers m.login.password: ${JSON.stringify(error.data)}`);
            session = error.data.session;
            assert.ok(session, "UIA session id");
            challenges.push(session);
        }
        await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: "alice" },
            password: "correct horse battery staple",
            session,
        });
    };

    // Spec v1.11: the first upload of cross-signing keys needs no UIA.
    await s.step("alice: bootstrapCrossSigning (POST /keys/device_signing/upload, POST /keys/signatures/upload)", () =>
        crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: uia }),
    );
    const crossSigningReady = (when) =>
        s.step(`alice: cross-signing is ready and her device is cross-signed (${when})`, async () => {
            await waitUntil("isCrossSigningReady()", () => crypto.isCrossSigningReady()).catch(async (e) => {
                throw new Error(`${e.message}; status: ${JSON.stringify(await crypto.getCrossSigningStatus())}`);
            });
            await waitUntil("alice's device to be signed by her self-signing key (POST /keys/signatures/upload, seen in /keys/query)", async () => {
                const v = await crypto.getDeviceVerificationStatus(alice.getUserId(), alice.getDeviceId());
                return v?.crossSigningVerified;
            });
        });
    await crossSigningReady("first keys");
    const firstMaster = (await bob.downloadKeysForUsers([alice.getUserId()])).master_keys?.[alice.getUserId()];
    await s.step("alice: her client has settled (synced past the first keys, no request in flight)", () => s.settled(alice));
    // Replacing them does: Element's "reset cross-signing". (Done once the client has settled:
    // a /keys/query answered with the old keys while the reset waits for UIA makes the Rust
    // crypto drop its new private keys, whatever the server.)
    await s.step("alice: resets cross-signing (POST /keys/device_signing/upload: 401 with UIA flows, then m.login.password)", async () => {
        await crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: uia });
        assert.equal(challenges.length, 1, "replacing cross-signing keys went through exactly one UIA challenge");
        const master = (await bob.downloadKeysForUsers([alice.getUserId()])).master_keys?.[alice.getUserId()];
        assert.notDeepEqual(master, firstMaster, "the master key was replaced");
    });
    await crossSigningReady("after the reset");
    await s.step("bob: sees alice's cross-signing keys and signed device (POST /keys/query)", async () => {
        const keys = await bob.downloadKeysForUsers([alice.getUserId()]);
        const me = alice.getUserId();
        assert.ok(keys.master_keys?.[me], "master_keys for alice");
        assert.ok(keys.self_signing_keys?.[me], "self_signing_keys for alice");
        assert.equal(keys.user_signing_keys?.[me], undefined, "user_signing_keys are only for their owner");
        const signatures = keys.device_keys[me][alice.getDeviceId()].signatures[me];
        const [selfSigningKeyId] = Object.keys(keys.self_signing_keys[me].keys);
        assert.ok(signatures[selfSigningKeyId], `device signed by the current self-signing key: ${JSON.stringify(signatures)}`);
        assert.ok(signatures[`ed25519:${alice.getDeviceId()}`], "device signed by itself");
        const identity = await waitUntil("bob's crypto to learn alice's identity", () => bob.getCrypto().getUserVerificationStatus(me));
        assert.equal(identity.isCrossSigningVerified(), false, "bob has not verified alice");
    });

    await s.step("alice: resetKeyBackup (POST /room_keys/version) and the backup is active", async () => {
        await crypto.resetKeyBackup();
        const version = await waitUntil("an active backup version", () => crypto.getActiveSessionBackupVersion());
        const info = await alice.http.authedRequest("GET", "/room_keys/version");
        assert.equal(info.version, version, "GET /room_keys/version returns the new backup");
        assert.equal(info.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2");
        assert.ok(info.auth_data?.signatures?.[alice.getUserId()], "backup auth_data is signed");
        const trust = await crypto.isKeyBackupTrusted(info);
        assert.ok(trust.trusted, "alice trusts her own backup (signed by her device / cross-signing)");
    });

    s.assertNoUnexpectedFailures();
});
