#include "core/device.h"

#include <array>

#include "core/error.h"
#include "core/tensor.h"

namespace nuance {

namespace {
std::array<DeviceMemory*, kDeviceTypes> g_memory{};
thread_local const char* g_op = nullptr;
}  // namespace

std::string Device::str() const {
    switch (type) {
        case DeviceType::Cpu: return "cpu";
        case DeviceType::Cuda: return "cuda:" + std::to_string(index);
        case DeviceType::Test: return "test:" + std::to_string(index);
    }
    return "device" + std::to_string((int)type) + ":" + std::to_string(index);
}

DeviceMemory* device_memory(DeviceType type) {
    const size_t i = (size_t)type;
    return i < g_memory.size() ? g_memory[i] : nullptr;
}

void set_device_memory(DeviceType type, DeviceMemory* memory) {
    const size_t i = (size_t)type;
    NUANCE_CHECK(i < g_memory.size(), "set_device_memory: unknown device type ", (int)type);
    NUANCE_CHECK(type != DeviceType::Cpu || memory == nullptr, "set_device_memory: the CPU's memory is the host's");
    g_memory[i] = memory;
}

const char* current_op_name() { return g_op ? g_op : "host access"; }

OpNameScope::OpNameScope(const char* name) : prev_(g_op) { g_op = name; }
OpNameScope::~OpNameScope() { g_op = prev_; }

void refuse_host_access(const Tensor& t, Device device) {
    fail(ErrorCode::InvalidArgument, current_op_name(), ": tensor ", t.str(), " is on device ", device.str(),
         ", which the host cannot read; move it with .to(Device::cpu()) first");
}

}  // namespace nuance
