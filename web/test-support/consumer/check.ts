// Type-checked by test/package.test.mjs as a user's code would be, against the packed
// tarball's repod.d.ts resolved through package.json's "exports" ("bundler" and "nodenext"
// module resolution). Every line must compile, except those marked @ts-expect-error, which
// must not (so the declarations are really checked, not `any`).

import {
  Client,
  ConnectionListener,
  type ClientOptions,
  type ClientState,
  type DisconnectedMessage,
  type Message,
  type WebSocketClass,
  type WebSocketLike,
} from "repod";
import WebSocket from "ws";

class Game extends Client {
  Network_connected(_data: Message): void {
    this.send({ action: "nickname", nickname: "Alice" });
  }
  Network_players(data: Message): void {
    const list: string[] = data.list;
    console.log(list);
  }
}

// Node: the ws package's class fits the WebSocket option as it is...
const game = new Game({ dispatch: "pump", WebSocket });
// ...and so does a subclass that adds TLS settings.
class TrustingWebSocket extends WebSocket {
  constructor(address: string | URL, protocols?: string | string[]) {
    super(address, protocols, { ca: "-----BEGIN CERTIFICATE-----..." });
  }
}
const options: ClientOptions = { WebSocket: TrustingWebSocket, heartbeatMs: 1000 };
new Client(options);
// The browser's (DOM) WebSocket fits too.
new Client({ WebSocket: globalThis.WebSocket });
const klass: WebSocketClass = WebSocket;
const like: WebSocketLike = new klass("ws://127.0.0.1:1/");
like.close();

game.on("disconnected", (d: DisconnectedMessage) => {
  const reason: string = d.reason;
  const code: number = d.code;
  console.log(reason, code);
});
game.on("error", (d) => console.log(d.error?.length));
game.on("players", function (d, client) {
  const me: Game = this;
  const same: Game = client;
  console.log(me === same, d.action);
});
const size: number = game.send({ action: "input", dx: 1, dy: -1 });
const pumped: number = game.pump();
const state: ClientState = game.state;
const rtt: number | null = game.rtt;
const alias: typeof Client = ConnectionListener;
console.log(size, pumped, state, rtt, alias, game.connect("ws://127.0.0.1:5071/ws").url);

// @ts-expect-error: dispatch is "immediate" or "pump"
new Client({ dispatch: "later" });
// @ts-expect-error: send takes an object with an action
game.send({ text: "no action" });
// @ts-expect-error: rtt is read-only
game.rtt = 5;
// @ts-expect-error: a class without the WebSocket properties does not fit
new Client({ WebSocket: class { constructor(_url: string) {} } });
