// `nuance serve` as a process: usage errors, start on a free port, answer, stop cleanly on SIGTERM / SIGINT.
#include <gmock/gmock.h>
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>

#include "../test_util.h"
#include "server_fixture.h"

using namespace nuance::server::test;
using ::testing::HasSubstr;

namespace {

using nuance::test::CliRun;
using nuance::test::run_cli;

// Starts `nuance serve ARGS` with stdout+stderr to a file; returns the pid and the URL it prints.
pid_t start_server(const std::string& args, const std::string& log, std::string& url) {
    const pid_t pid = fork();
    if (pid == 0) {
        const std::string cmd = std::string("exec ") + NUANCE_CLI_PATH + " serve " + args + " >" + log + " 2>&1";
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
        _exit(127);
    }
    for (int i = 0; i < 200 && url.empty(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::ifstream f(log);
        std::string line;
        while (std::getline(f, line)) {
            const size_t at = line.find("http://127.0.0.1:");
            if (at != std::string::npos) url = line.substr(at, line.find(' ', at) - at);
        }
    }
    return pid;
}

int wait_exit(pid_t pid, double timeout_s) {
    const auto t0 = std::chrono::steady_clock::now();
    int st = 0;
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

}  // namespace

TEST(ServeCli, UsageErrors) {
    // No model and no built-in one (NUANCE_DEFAULT_MODEL pointing nowhere); without it, serve uses the built-in model.
    CliRun r = run_cli("serve", "NUANCE_DEFAULT_MODEL=/nonexistent ");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("no model"));
    r = run_cli("serve --models-dir /nonexistent/models --port 0");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("'/nonexistent/models' is not a directory"));
    r = run_cli("serve -m /nonexistent.safetensors --port 0");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("does not exist"));
    r = run_cli("serve --models-dir " + models_dir().string() + " --port 70000");
    EXPECT_EQ(r.code, 2) << r.out;
    r = run_cli("serve --models-dir " + models_dir().string() + " --port 0 --api-key-file /nonexistent/key");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("API key file '/nonexistent/key' does not exist"));
    // a FIFO, a device or a huge file is refused before reading (never blocks, never reads without end)
    r = run_cli("serve --models-dir " + models_dir().string() + " --port 0 --api-key-file /dev/zero");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("API key file '/dev/zero' is not a regular file (it is a character device)"));
    r = run_cli("serve --help");
    EXPECT_EQ(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("--models-dir"));
    EXPECT_THAT(r.out, HasSubstr("--queue-size"));
}

TEST(ServeCli, ServesAndStopsOnSignals) {
    for (const int sig : {SIGTERM, SIGINT}) {
        const std::string log = (fs::path(NUANCE_SCRATCH_DIR) / ("nuance_serve_cli_" + std::to_string(::getpid()) + ".log")).string();
        std::string url;
        const pid_t pid = start_server("--port 0 -t 1 --models-dir " + models_dir().string() + " -m " +
                                           (models_dir() / "tiny.safetensors").string(),
                                       log, url);
        ASSERT_FALSE(url.empty()) << "no URL printed";
        const int port = std::stoi(url.substr(url.rfind(':') + 1));
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60, 0);
        auto r = c.Post("/sdapi/v1/txt2img", R"({"prompt": "x", "steps": 1, "width": 64, "height": 64})", "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
        // A long job in flight does not delay the shutdown beyond a step.
        r = c.Post("/api/v1/jobs", R"({"prompt": "x", "steps": 150, "width": 64, "height": 64})", "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 202);
        kill(pid, sig);
        EXPECT_EQ(wait_exit(pid, 20), 0) << "signal " << sig;
        std::ifstream f(log);
        const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        EXPECT_THAT(text, HasSubstr("nuance serve: stopped"));
        EXPECT_THAT(text, HasSubstr("(models: tiny.safetensors, broken.safetensors, sub/other.safetensors)"));
        fs::remove(log);
    }
}

TEST(ServeCli, EveryOptionIsValidatedAtStart) {
    const std::string dir = " --port 0 --models-dir " + models_dir().string();
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"--max-side -1", "usage: --max-side must be in 8..16384, got -1"},
        {"--max-steps 0", "usage: --max-steps must be in 1..10000, got 0"},
        {"--http-threads 100000", "usage: --http-threads must be in 1..256, got 100000"},
        {"--http-threads 0", "usage: --http-threads must be in 1..256, got 0"},
        {"--threads -3", "usage: --threads must be in 0..1024, got -3"},
        {"--max-body-mb 0", "usage: --max-body-mb must be in 1..4096, got 0"},
        {"--queue-size 0", "usage: --queue-size must be in 1..100000, got 0"},
        {"--max-models 0", "usage: --max-models must be in 1..64, got 0"},
        {"--max-images 0", "usage: --max-images must be in 1..1000, got 0"},
        {"--max-pixels 10", "usage: --max-pixels must be in 64..268435456, got 10"},
        {"--preview-interval -1", "usage: --preview-interval must be in 0..100000, got -1"},
        {"--history-mb 0", "usage: --history-mb must be in 1..1048576, got 0"},
    };
    for (const auto& [args, message] : cases) {
        const CliRun r = run_cli("serve " + args + dir);
        EXPECT_EQ(r.code, 2) << args << ": " << r.out;
        EXPECT_THAT(r.out, HasSubstr(message)) << args;
        EXPECT_THAT(r.out, ::testing::Not(HasSubstr("listening"))) << args;
    }
}
