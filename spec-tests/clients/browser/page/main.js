// The test page: logs in with Hydrogen (hydrogen-view-sdk) and shows one room with
// Hydrogen's own RoomView (timeline and composer). Parameters come from the query string:
// ?hs=URL&user=LOCALPART&password=...&room=ROOM_ID. Progress is in window.testState and
// in #status, so the test (and a screenshot) can tell how far it got.
import {
    Platform,
    Client,
    LoadStatus,
    createNavigation,
    createRouter,
    RoomViewModel,
    RoomView,
    viewClassForTile,
    FeatureSet,
} from "hydrogen-view-sdk";

const state = (window.testState = { step: "starting", error: null });
function step(name) {
    state.step = name;
    document.getElementById("status").textContent = name;
}
function fail(message) {
    state.error = message;
    document.getElementById("status").textContent = `FAILED at ${state.step}: ${message}`;
}

async function main() {
    const params = new URLSearchParams(location.search);
    const app = document.getElementById("app");
    const assetPaths = {
        downloadSandbox: "download-sandbox.html",
        worker: "main.js",
        olm: { wasm: "olm.wasm", legacyBundle: "olm_legacy.js", wasmBundle: "olm.js" },
        serviceWorker: "sw.js",
    };
    step("platform");
    const platform = new Platform({ container: app, assetPaths, config: {}, options: { development: false } });
    const navigation = createNavigation();
    platform.setNavigation(navigation);
    await platform.init();
    const urlRouter = createRouter({ navigation, history: platform.history });
    urlRouter.attach();
    const client = new Client(platform);

    step("queryLogin");
    const loginOptions = await client.queryLogin(params.get("hs")).result;
    if (!loginOptions?.password) return fail(`no password login offered: ${JSON.stringify(loginOptions)}`);
    step("login");
    client.startWithLogin(loginOptions.password(params.get("user"), params.get("password")));
    await client.loadStatus.waitFor(
        (s) => s === LoadStatus.Ready || s === LoadStatus.Error || s === LoadStatus.LoginFailed,
    ).promise;
    if (client.loginFailure) return fail(`login failed: ${client.loginFailure}`);
    if (client.loadError) return fail(`load failed: ${client.loadError.message}`);

    step("room");
    const { session } = client;
    const roomId = params.get("room");
    let room = session.rooms.get(roomId);
    for (let i = 0; !room && i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        room = session.rooms.get(roomId);
    }
    if (!room) return fail(`room ${roomId} not in the session's rooms`);
    const features = await FeatureSet.load(platform.settingsStorage);
    const vm = new RoomViewModel({
        room,
        ownUserId: session.userId,
        platform,
        urlRouter,
        navigation,
        features,
        session,
    });
    await vm.load();
    app.appendChild(new RoomView(vm, viewClassForTile).mount());
    state.userId = session.userId;
    step("ready");
}

main().catch((e) => fail(e?.stack ?? String(e)));
