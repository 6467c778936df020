// The web page (web/index.html), embedded with the assembler's .incbin so the binary needs no data files.
// NUANCE_WEB_DIR is the absolute web/ path, a compile definition set by CMakeLists.txt (which also makes this file
// depend on index.html).
#include "http_util.h"

#ifndef NUANCE_WEB_DIR
#error "NUANCE_WEB_DIR (absolute path of web/) must be defined"
#endif

#if defined(__APPLE__)
#define NUANCE_WEB_SYM(name) "_" #name
#define NUANCE_WEB_SECTION ".const_data\n"
#define NUANCE_WEB_END ".text\n"
#define NUANCE_WEB_HIDE(name) ".private_extern " NUANCE_WEB_SYM(name) "\n"
#else
#define NUANCE_WEB_SYM(name) #name
#define NUANCE_WEB_SECTION ".pushsection .rodata.nuance_web_assets, \"a\"\n"
#define NUANCE_WEB_END ".popsection\n"
#define NUANCE_WEB_HIDE(name) ".hidden " NUANCE_WEB_SYM(name) "\n"
#endif

__asm__(NUANCE_WEB_SECTION
        ".global " NUANCE_WEB_SYM(nuance_web_index_html_begin) "\n"
        NUANCE_WEB_HIDE(nuance_web_index_html_begin)
        ".global " NUANCE_WEB_SYM(nuance_web_index_html_end) "\n"
        NUANCE_WEB_HIDE(nuance_web_index_html_end)
        ".balign 16\n"
        NUANCE_WEB_SYM(nuance_web_index_html_begin) ":\n"
        ".incbin \"" NUANCE_WEB_DIR "/index.html\"\n"
        NUANCE_WEB_SYM(nuance_web_index_html_end) ":\n"
        ".byte 0\n"
        NUANCE_WEB_END);

extern "C" {
extern const char nuance_web_index_html_begin[];
extern const char nuance_web_index_html_end[];
}

namespace nuance::server {

void add_web_routes(ServerContext& c) {
    auto page = [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Cache-Control", "no-cache");
        res.set_content(nuance_web_index_html_begin, (size_t)(nuance_web_index_html_end - nuance_web_index_html_begin),
                        "text/html; charset=utf-8");
    };
    c.http.Get("/", page);
    c.http.Get("/index.html", page);
    c.http.Get("/favicon.ico", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
}

}  // namespace nuance::server
