/* SPDX-License-Identifier: MIT */
/*
 * Built into the libFuzzer targets only. UBSan findings are recoverable in
 * that build only so that ubsan.supp can silence findings that are already
 * reported; everything else still stops the fuzzer (halt_on_error=1), also
 * when a target is run by hand without UBSAN_OPTIONS. An explicit
 * UBSAN_OPTIONS overrides these defaults option by option.
 */
#ifndef FUZZ_UBSAN_SUPP
#error "FUZZ_UBSAN_SUPP (path of ubsan.supp) must be defined"
#endif

const char *__ubsan_default_options(void);
const char *__asan_default_options(void);

__attribute__((visibility("default"))) const char *__ubsan_default_options(void)
{
        return "halt_on_error=1:print_stacktrace=1:suppressions=" FUZZ_UBSAN_SUPP;
}

__attribute__((visibility("default"))) const char *__asan_default_options(void)
{
        return "abort_on_error=1:detect_leaks=1";
}
