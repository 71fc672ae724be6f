// A receiver of Tern's deliveries that verifies each one with the Standard Webhooks reference
// library for JavaScript (`npm install standardwebhooks`), the way a channel would.
//
//     WEBHOOK_SECRET=whsec_… node receiver.mjs PORT
//
// Answers 204 to a delivery whose signature checks out and 401 to any other, and prints one
// JSON line per request on standard output: {"verified": true, "id": …, "body": …} or
// {"verified": false, "error": …}. The first line is "listening on PORT".
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.WEBHOOK_SECRET);

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    let report;
    try {
      const payload = webhook.verify(body.toString("utf8"), req.headers);
      report = { verified: true, id: req.headers["webhook-id"], body: payload };
      res.writeHead(204).end();
    } catch (e) {
      report = { verified: false, error: String(e.message || e) };
      res.writeHead(401).end();
    }
    console.log(JSON.stringify(report));
  });
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
