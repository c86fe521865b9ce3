// `dnnd ctl`: the command-line client of the controller's REST API.
//
//   dnnd ctl [--controller host:port|http://host:port] [--token T] [-o table|json | --json]
//            <noun> <verb> [args] [flags]
//     train --model M --dataset D [job flags] [--follow]
//     dataset list | get <name> | delete <name> | create (upload) <name> --format F <files>
//     model   list | get <name> | create <name> --spec model.toml
//     job     list | get <id> | create ... | cancel <id> | delete <id> | logs <id> [-f]
//     node    list
//     predict <model> <file.png|file.jpg|file.json>... [--job N] [--invert auto|true|false]
//   `--help` after any verb describes it and its flags.
// Each verb declares its flags and arguments in one table (ctl.cc, with
// roles/ctl/flags.h): `--help` prints it, and a command line it does not
// allow -- an unknown flag (`--epoch`, with "did you mean --epochs?"), noun
// or verb, a missing or extra argument -- is a usage error, never ignored.
// Every verb prints a table (or a line) unless -o json asks for the
// controller's JSON; settings print in their shortest exact form (lr = 0.001).
// The controller address and the bearer token come from flags, the
// environment or ~/.config/dnnd/ctl.toml (ctl_settings.h).
//
// Exit codes a script can rely on: 0 done; 1 the controller could not be
// reached (said in words: "cannot reach the controller at 127.0.0.1:8080:
// connection refused") or failed (5xx); 2 usage error; 3 the controller
// refused the request (4xx: bad input, not found, conflict, 401 without the
// right token) -- its message on stderr; 4 a followed job (train --follow)
// ended failed or cancelled.
#pragma once

#include <string>
#include <vector>

namespace dnnd {

int RunCtl(const std::vector<std::string>& args);

}  // namespace dnnd
