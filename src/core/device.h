// Where a tensor's memory lives. Today every kernel runs on the CPU; the backend interface (backends/backend.h) lets
// another device (CUDA next) plug in without touching models: ops dispatch on the device of their operands.
// A tensor on a device other than the CPU has no host pointer: data<T>() / raw() on it throw (naming the op that
// asked and the device); move it with Tensor::to(Device::cpu()).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace nuance {

// Cpu: host memory (every kernel today). Cuda: reserved for the CUDA backend (docs/backends.md). Test: a device the
// tests register a backend for (tests/backends/test_backend_seam.cpp), to prove that every kernel call goes through
// the interface.
enum class DeviceType : uint8_t { Cpu = 0, Cuda = 1, Test = 2 };
constexpr int kDeviceTypes = 3;

struct Device {
    DeviceType type = DeviceType::Cpu;
    int index = 0;
    static constexpr Device cpu() { return Device{}; }
    bool is_cpu() const { return type == DeviceType::Cpu; }
    bool operator==(const Device& o) const = default;
    std::string str() const;  // "cpu", "cuda:0", "test:0"
};

class Storage;
class Tensor;

// The memory side of a device that is not the host: allocation and copies (within the device and between it and
// the host). Installed by the device's backend (register_backend); core/tensor.cpp calls it for empty() on the
// device, copy_, to(Device), contiguous() and the other copies.
class DeviceMemory {
public:
    virtual ~DeviceMemory() = default;
    // `bytes` of uninitialised device memory.
    virtual std::shared_ptr<Storage> allocate(size_t bytes, Device device) = 0;
    // dst = src element by element (same shape, any dtypes, any strides, broadcast src), at least one of them on
    // this device, the other on it or on the host.
    virtual void copy(const Tensor& dst, const Tensor& src) = 0;
};

// nullptr when no backend is registered for the type (the CPU never has one: its memory is the host's).
DeviceMemory* device_memory(DeviceType type);
void set_device_memory(DeviceType type, DeviceMemory* memory);

// The op running on this thread (set by the ops' dispatch for the duration of the call), for error messages;
// "host access" when none.
const char* current_op_name();
class OpNameScope {
public:
    explicit OpNameScope(const char* name);
    ~OpNameScope();
    OpNameScope(const OpNameScope&) = delete;
    OpNameScope& operator=(const OpNameScope&) = delete;

private:
    const char* prev_;
};

// Throws InvalidArgument "<op>: tensor <str> is on device <dev>, which the host cannot read; move it with
// .to(Device::cpu()) first" (op: the op running on this thread, or "host access").
[[noreturn]] void refuse_host_access(const Tensor& t, Device device);

}  // namespace nuance
