// How `dnnd ctl` prints the controller's answers for people: aligned tables
// (or a line), measured numbers rounded, settings exact in their shortest
// form (core/json_text.h SettingsText). Each Print* takes the JSON of one
// endpoint's answer, as documented there, and writes stdout.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <vector>

namespace dnnd::ctl {

// A value for a table cell: "-" for null, text as it is, and a measured
// number (a loss, seconds, samples/s) to four significant digits without
// an exponent in the usual range (0.2143, 8412).
std::string Num(const boost::json::value& v);

// Columns padded to their widest cell, two spaces apart.
void Table(const std::vector<std::string>& header,
           const std::vector<std::vector<std::string>>& rows);

// "7 (0.912)  5 (0.051)  9 (0.020)": the `k` most probable classes.
std::string TopClasses(const boost::json::array& probabilities, size_t k);

void PrintDatasets(const boost::json::value& v);  // one dataset, or {"datasets": [...]}
void PrintModels(const boost::json::value& v);    // one model (with its spec), or {"models": [...]}
void PrintJobs(const boost::json::value& v);      // {"jobs": [...]}
void PrintJob(const boost::json::value& job);     // its settings and per-epoch history
void PrintNodes(const boost::json::value& v);     // {"nodes": [...]}
void PrintCancel(const boost::json::value& v);    // {"id": 3, "cancelling": true}

}  // namespace dnnd::ctl
