// Content repository through matrix-js-sdk: uploadContent, then fetching the bytes back
// through the URLs the SDK builds (authenticated media; the legacy URLs answer 404 for
// files stored since the freeze), a thumbnail, and an m.image message whose mxc URI the
// other client downloads.

import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync } from "node:zlib";

import { Scenario, sdk, waitForEmit, waitUntil } from "../lib/harness.js";

const { RoomEvent, KnownMembership } = sdk;

function crc32(bytes) {
    let crc = ~0;
    for (const byte of bytes) {
        crc ^= byte;
        for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
    }
    return ~crc >>> 0;
}

/** A real RGB PNG of the given size (a colour gradient), built without dependencies. */
function makePng(width, height) {
    const chunk = (type, data) => {
        const out = Buffer.alloc(12 + data.length);
        out.writeUInt32BE(data.length, 0);
        out.write(type, 4, "latin1");
        data.copy(out, 8);
        out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
        return out;
    };
    const header = Buffer.alloc(13);
    header.writeUInt32BE(width, 0);
    header.writeUInt32BE(height, 4);
    header[8] = 8; // bit depth
    header[9] = 2; // RGB
    const rows = Buffer.alloc((width * 3 + 1) * height);
    for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
            const at = y * (width * 3 + 1) + 1 + x * 3;
            rows[at] = (x * 255) / width;
            rows[at + 1] = (y * 255) / height;
            rows[at + 2] = 128;
        }
    }
    return Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk("IHDR", header),
        chunk("IDAT", deflateSync(rows)),
        chunk("IEND", Buffer.alloc(0)),
    ]);
}

async function fetchBytes(url, accessToken) {
    const response = await fetch(url, { headers: accessToken ? { authorization: `Bearer ${accessToken}` } : {} });
    const body = Buffer.from(await response.arrayBuffer());
    if (response.status !== 200) {
        throw new Error(`GET ${new URL(url).pathname} → ${response.status} ${body.toString("utf8").slice(0, 200)}`);
    }
    return { body, type: response.headers.get("content-type"), disposition: response.headers.get("content-disposition") };
}

test("uploadContent, download it back, thumbnail it, and share it in a room", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice", { crypto: false });
    const bob = await s.login("bob", { crypto: false });

    const text = Buffer.from("Hello, content repository! ✓\n".repeat(100));
    const { content_uri: textUri } = await s.step("alice: uploadContent text file (POST /_matrix/media/v3/upload)", () =>
        alice.uploadContent(new Blob([text], { type: "text/plain" }), { name: "hello.txt", type: "text/plain" }),
    );
    assert.match(textUri, /^mxc:\/\/localhost\/[A-Za-z0-9_-]+$/, "content_uri");

    await s.step("the SDK's legacy URL is frozen for new files (GET /_matrix/media/v3/download → 404)", async () => {
        const url = alice.mxcUrlToHttp(textUri);
        assert.ok(url.includes("/_matrix/media/v3/download/"), url);
        const response = await fetch(url);
        assert.equal(response.status, 404);
        assert.equal((await response.json()).errcode, "M_NOT_FOUND");
    });

    await s.step("download through the SDK's authenticated URL (GET /_matrix/client/v1/media/download)", async () => {
        const url = bob.mxcUrlToHttp(textUri, undefined, undefined, undefined, false, true, true);
        assert.ok(url.includes("/_matrix/client/v1/media/download/"), url);
        const got = await fetchBytes(url, bob.getAccessToken());
        assert.deepEqual(got.body, text, "downloaded bytes equal the upload");
        assert.match(got.type, /^text\/plain/);
        assert.match(got.disposition ?? "", /hello\.txt/, "content-disposition carries the file name");
    });

    const png = makePng(320, 240);
    const { content_uri: imageUri } = await s.step("alice: uploadContent PNG", () =>
        alice.uploadContent(new Blob([png], { type: "image/png" }), { name: "gradient.png", type: "image/png" }),
    );

    await s.step("thumbnail through the SDK's URL (GET /_matrix/client/v1/media/thumbnail)", async () => {
        const url = bob.mxcUrlToHttp(imageUri, 64, 64, "scale", false, true, true);
        assert.ok(url.includes("/_matrix/client/v1/media/thumbnail/"), url);
        const got = await fetchBytes(url, bob.getAccessToken());
        assert.match(got.type, /^image\/(png|jpeg|webp)/);
        assert.ok(got.body.length > 0 && got.body.length < png.length, `thumbnail is smaller than the original (${got.body.length} vs ${png.length})`);
    });

    await s.step("media config (GET /_matrix/media/v3/config)", async () => {
        const config = await alice.getMediaConfig();
        assert.ok(config["m.upload.size"] >= png.length, `m.upload.size ${config["m.upload.size"]}`);
    });

    const roomId = await s.step("alice: room with bob", async () => {
        const { room_id } = await alice.createRoom({ preset: "private_chat", invite: [bob.getUserId()] });
        await waitUntil("bob's invite", () => bob.getRoom(room_id)?.getMyMembership() === KnownMembership.Invite);
        await bob.joinRoom(room_id);
        return room_id;
    });

    const received = waitForEmit(
        bob,
        RoomEvent.Timeline,
        (event, room) => room?.roomId === roomId && event.getContent().msgtype === "m.image",
        "bob: the m.image event",
    );
    await s.step("alice: sends an m.image with the uploaded mxc URI", () =>
        alice.sendMessage(roomId, {
            msgtype: "m.image",
            body: "gradient.png",
            url: imageUri,
            info: { mimetype: "image/png", size: png.length, w: 320, h: 240 },
        }),
    );
    const [event] = await s.step("bob: receives the image message", () => received);
    await s.step("bob: downloads the image from the event", async () => {
        const url = bob.mxcUrlToHttp(event.getContent().url, undefined, undefined, undefined, false, true, true);
        const got = await fetchBytes(url, bob.getAccessToken());
        assert.deepEqual(got.body, png, "image bytes equal the upload");
        assert.equal(got.type, "image/png");
    });

    s.assertNoUnexpectedFailures();
});
