# Sanitizer run-time options for `scripts/test --sanitize`; sourced there, before ctest.
# Exported, so every process a test starts (trellis, mpirun and the trellis-worker ranks it
# launches, which inherit mpirun's environment) reports the same way.
#   source tests/sanitizers/env.sh   # from the repository root, to run a build-asan/ binary by hand
_trellis_sanitizers="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# halt_on_error: the first finding ends the process with a failing status.
# detect_leaks: LeakSanitizer at exit, minus known third-party leaks (lsan.supp).
# fast_unwind_on_malloc=0: OpenMPI allocates from plugins it dlcloses in MPI_Finalize and
#   builds without frame pointers; the fast unwinder then stops at an "<unknown module>" frame
#   that no suppression can name. The slow unwinder reaches libmpi/libopen-rte, which
#   lsan.supp names. It costs time in malloc-heavy code.
# strict_string_checks, check_initialization_order, detect_stack_use_after_return: off by
#   default because they cost something; worth it for a test run.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1:fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$_trellis_sanitizers/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# -fno-sanitize-recover=undefined already makes UB fatal; this adds the stack to the report.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
unset _trellis_sanitizers
