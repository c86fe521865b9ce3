// The controller's web dashboard: a single-page app (jobs, a job's live
// charts and log, the worker pool, predictions) written in plain HTML, CSS
// and JavaScript under src/roles/controller/dashboard/, compiled into the binary
// (src/core/embedded_files.h) and served next to the REST API it calls.
//
//   GET /, GET /ui      302 to /ui/
//   GET /ui/            index.html
//   GET /ui/{file}      an asset, with its content type; unknown: 404 JSON
//
// Caching: every answer carries a strong ETag (a hash of the bytes) and
// `Cache-Control: no-cache`, so a browser revalidates (304, no body) and a
// new binary's assets are seen on the next load, never a stale mix of two
// versions. The page itself knows nothing of the server beyond /api/v1.
#pragma once

#include <span>

#include "core/embedded_files.h"

namespace dnnd {

class HttpRouter;

// Adds the routes above to `router`.
void AddDashboardRoutes(HttpRouter& router);

// The dashboard's files; defined in the generated DashboardAssets.cc
// (CMakeLists.txt: dnnd_embed_files).
std::span<const EmbeddedFile> DashboardAssets();

}  // namespace dnnd
