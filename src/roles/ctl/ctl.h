// `dnnd ctl`: the command-line client of the controller's REST API.
//
//   dnnd ctl [--controller host:port] [--token T] [-o table|json] <noun> <verb> [args]
//     train --model M --dataset D [job options] [--follow]
//     dataset list | get <name> | delete <name>
//     dataset upload <name> --format idx|npy --train-images F --train-labels F [--test-images F --test-labels F]
//     dataset upload <name> --format npz|csv --train F [--test F]
//     model   list | get <name> | create <name> --spec model.toml
//     job     list | get <id> | cancel <id> | delete <id> | logs <id> [-f]
//     job     create --model M --dataset D [--epochs N --batch N --lr X --optimizer O --workers N
//                    --servers N --mode sync|async|kavg --kavg-steps N --seed N --limit-train N --limit-test N]
//     predict <model> <file.png|file.jpg|file.json>... [--job N] [--invert auto|true|false]
//   `--help` after any verb describes it.
// The controller address and the bearer token come from flags, the
// environment or ~/.config/dnnd/ctl.toml (ctl_settings.h).
//
// Exit codes a script can rely on: 0 done; 1 the controller could not be
// reached or failed (5xx); 2 usage error; 3 the controller refused the
// request (4xx: bad input, not found, conflict, 401 without the right token)
// -- its message on stderr; 4 a followed job (train --follow) ended failed
// or cancelled.
#pragma once

#include <string>
#include <vector>

namespace dnnd {

int RunCtl(const std::vector<std::string>& args);

}  // namespace dnnd
