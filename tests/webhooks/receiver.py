"""A receiver of Tern's deliveries that verifies each one with the Standard Webhooks reference
library for Python (`pip install standardwebhooks`), the way a channel would.

    WEBHOOK_SECRET=whsec_… python receiver.py PORT

Answers 204 to a delivery whose signature checks out and 401 to any other, and prints one JSON
line per request on standard output: {"verified": true, "id": …, "body": …} or
{"verified": false, "error": …}. The first line is "listening on PORT".
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            payload = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as e:
            report = {"verified": False, "error": str(e)}
            self.send_response(401)
        else:
            report = {"verified": True, "id": self.headers["webhook-id"], "body": payload}
            self.send_response(204)
        self.end_headers()
        print(json.dumps(report), flush=True)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Receiver)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
