// `dnnd ctl`: the command-line client of the controller's REST API.
//
//   dnnd ctl [--controller host:port] [-o table|json] <noun> <verb> [args]
//     dataset list | get <name> | delete <name>
//     dataset upload <name> --format idx|npy --train-images F --train-labels F [--test-images F --test-labels F]
//     dataset upload <name> --format npz|csv --train F [--test F]
//     model   list | get <name> | create <name> --spec model.toml
//     job     list | get <id> | cancel <id> | logs <id>
//     job     create --model M --dataset D [--epochs N --batch N --lr X --optimizer O --workers N
//                    --servers N --mode sync|async|kavg --kavg-steps N --seed N --limit-train N --limit-test N]
//     predict <model> <file.png|file.jpg|file.json>... [--job N] [--invert auto|true|false]
// The controller address comes from --controller, else $DNND_CONTROLLER,
// else 127.0.0.1:8080.
//
// Exit codes a script can rely on: 0 done; 1 the controller could not be
// reached or failed (5xx); 2 usage error; 3 the controller refused the
// request (4xx: bad input, not found, conflict) -- its message on stderr.
#pragma once

#include <string>
#include <vector>

namespace dnnd {

int RunCtl(const std::vector<std::string>& args);

}  // namespace dnnd
