// The HTTP API's routes (docs/http-api.md, "Endpoints"): each parses its request, calls one
// service, and writes the answer. Registered on the server by HttpApi.
//   routes_status.cc  /, /healthz, /metrics, capabilities, statuses, conversations
//   routes_out.cc     /api/messages/out...: multipart, drafts (create, PUT a file, send, delete)
//   routes_in.cc      /api/messages/in...: list, peek, pop, delete
//   routes_subscriptions.cc  /api/subscriptions...: webhooks
#pragma once

#include <httplib.h>

#include "integration-point/api/api_inbox.h"
#include "integration-point/api/api_refusals.h"
#include "integration-point/api/drafts.h"
#include "integration-point/api/outgoing.h"
#include "integration-point/api/status_queries.h"
#include "integration-point/api/subscriptions.h"

namespace bud::ip::api {

void AddStatusRoutes(httplib::Server& srv, StatusQueries& queries);
void AddOutgoingRoutes(httplib::Server& srv, OutgoingMessages& outgoing, Drafts& drafts,
                       StatusQueries& queries, ApiRefusals& refusals);
void AddIncomingRoutes(httplib::Server& srv, ApiInbox& inbox, StatusQueries& queries);
void AddSubscriptionRoutes(httplib::Server& srv, Subscriptions& subs);

// PUT /api/messages/out/{id}: a file of a draft, read by its route as a stream.
bool IsFileUpload(const httplib::Request& req);

// POST /api/messages/out/{id}: send a draft; takes no body (its route drops a small one and
// refuses a larger one itself).
bool IsSend(const httplib::Request& req);

}  // namespace bud::ip::api
