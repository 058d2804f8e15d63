// Serves one provider's fixtures until killed, for a scenario that runs elsewhere (a browser page):
//   node tests/js/sdk/serve-provider.mjs <fixture>   → prints {"httpUrl", "wsUrl"} on one line
import { ProviderServer } from "./provider-server.mjs";

const server = await ProviderServer.start({ fixture: process.argv[2] || "openai-realtime" });
process.stdout.write(`${JSON.stringify({ httpUrl: server.httpUrl, wsUrl: server.wsUrl })}\n`);
process.on("SIGTERM", () => server.stop().then(() => process.exit(0)));
