#pragma once
#include <string>
namespace nuance {
struct CompareLine {
    std::string name;
    bool pass = false;
    bool skip = false;
    double max_abs = 0;
    double atol = 0;
    std::string reason;
    double mean_abs = 0;  // mean |got - ref| (0 when not computed)
};
}
