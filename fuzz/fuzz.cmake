# libFuzzer targets (fuzz/README.md), built with -DNUANCE_FUZZ=ON by clang only (scripts/fuzz.sh).
# They link small static libraries of just the parsers they exercise, compiled with ASan + UBSan and libFuzzer's
# coverage instrumentation, instead of the whole engine: the request and diffusers-JSON targets need a few samplers,
# ops and model configs, the others only core/, io/ and text/ (the lists are the link closure of each target).
# Included from the top-level CMakeLists.txt, so the per-file compile definitions set there apply here too.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "NUANCE_FUZZ needs clang (libFuzzer): configure with CC=clang CXX=clang++ "
                      "(scripts/fuzz.sh does), got ${CMAKE_CXX_COMPILER_ID}")
endif()

set(NUANCE_FUZZ_SANITIZE -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

function(nuance_fuzz_library name)
  list(TRANSFORM ARGN PREPEND ${PROJECT_SOURCE_DIR}/)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/include
                             ${PROJECT_SOURCE_DIR}/apps/server)
  target_compile_options(${name} PUBLIC ${NUANCE_ARCH_FLAGS} ${NUANCE_FUZZ_SANITIZE} -fsanitize=fuzzer-no-link)
  target_link_options(${name} PUBLIC ${NUANCE_FUZZ_SANITIZE})
endfunction()

# core + io + text: safetensors, GGUF (+ the ggml block dequantizers), ckpt/pickle, zip, PNG/JPEG, prompt syntax and the CLIP tokenizer.
nuance_fuzz_library(nuance_fuzz_parsers
  src/backends/cpu/ggml_quants.cpp fuzz/stub_quantized.cpp src/io/gguf.cpp src/io/gguf_layout.cpp
  src/core/allocator.cpp src/core/device.cpp src/core/dtype.cpp src/core/error.cpp src/core/logger.cpp src/core/op_stats.cpp
  src/core/tensor.cpp
  src/core/quantized_weight.cpp
  src/io/atomic_file.cpp src/io/ckpt.cpp src/io/image.cpp src/io/image_write.cpp src/io/mmap_file.cpp src/io/pickle.cpp
  src/io/json_file.cpp src/io/png_meta.cpp src/io/safetensors.cpp src/io/weights.cpp src/io/zip_reader.cpp
  src/text/clip_tokenizer.cpp src/text/clip_tokenizer_builtin.cpp src/text/prompt_check.cpp src/text/prompt_parser.cpp
  src/text/text_fix.cpp
  src/text/unicode.cpp src/text/unicode_tables.cpp)
target_link_libraries(nuance_fuzz_parsers PUBLIC nlohmann_json::nlohmann_json PNG::PNG JPEG::JPEG ZLIB::ZLIB
                      OpenSSL::Crypto Threads::Threads)

# The server's request parsing: it validates against the whole engine's options (samplers, schedules, ControlNet units,
# inpainting, hires, LoRA tags), whose link closure is most of the engine, so this library is the engine's sources
# (less the parsers above) with the CPU backend and oneDNN; clang does not build flash_attention.cpp's AVX-512
# lambdas, so fuzz/stub_flash_attention.cpp stands in for it (the parser never runs attention).
file(GLOB_RECURSE NUANCE_FUZZ_ENGINE_SOURCES RELATIVE ${PROJECT_SOURCE_DIR} CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/src/*.cpp)
get_target_property(NUANCE_FUZZ_PARSER_SOURCES nuance_fuzz_parsers SOURCES)
foreach(f ${NUANCE_FUZZ_PARSER_SOURCES})
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${f})
  list(REMOVE_ITEM NUANCE_FUZZ_ENGINE_SOURCES ${rel})
endforeach()
list(REMOVE_ITEM NUANCE_FUZZ_ENGINE_SOURCES src/backends/cpu/flash_attention.cpp)
# Not in the parser's link closure (and clang 14 lacks some C++20 the golden runners use): evaluation, training, C API.
list(FILTER NUANCE_FUZZ_ENGINE_SOURCES EXCLUDE REGEX "^src/(eval|train|capi)/")
nuance_fuzz_library(nuance_fuzz_server
  apps/server/request_parse.cpp apps/server/base64.cpp apps/server/controlnet_api.cpp fuzz/stub_flash_attention.cpp
  ${NUANCE_FUZZ_ENGINE_SOURCES})
# The engine's sources are here for their option tables and validators, not for their kernels: compiled without
# optimisation or debug info (still with ASan/UBSan and coverage) they build in a fraction of the time, which is most
# of the fuzz build in CI. The request parser itself keeps the build type's flags.
list(TRANSFORM NUANCE_FUZZ_ENGINE_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/)
set_property(SOURCE ${NUANCE_FUZZ_ENGINE_SOURCES} APPEND PROPERTY COMPILE_OPTIONS -O0 -g0)
target_link_libraries(nuance_fuzz_server PUBLIC nuance_fuzz_parsers DNNL::dnnl OpenMP::OpenMP_CXX)

# Model configs read from diffusers config.json files. Only the UNet's has a file of its own: the VAE and CLIP configs
# live with their modules, which link the ops and the oneDNN backend (flash_attention.cpp's AVX-512 code builds with
# gcc only), so they are not fuzzed here.
nuance_fuzz_library(nuance_fuzz_models src/models/unet/unet_config.cpp)
target_link_libraries(nuance_fuzz_models PUBLIC nuance_fuzz_parsers)

add_custom_target(nuance_fuzz)
function(nuance_fuzz_target name lib)
  add_executable(${name} ${PROJECT_SOURCE_DIR}/fuzz/${name}.cpp)
  target_link_libraries(${name} PRIVATE ${lib})
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  add_dependencies(nuance_fuzz ${name})
endfunction()

nuance_fuzz_target(fuzz_safetensors nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_gguf nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_ckpt nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_pickle nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_zip nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_png nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_jpeg nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_prompt nuance_fuzz_parsers)
nuance_fuzz_target(fuzz_request nuance_fuzz_server)
nuance_fuzz_target(fuzz_lora nuance_fuzz_server)
nuance_fuzz_target(fuzz_diffusers_json nuance_fuzz_models)
