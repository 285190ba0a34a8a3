# Which GEMM the training engine runs: TRELLIS_BLAS=openblas|eigen.
#
# openblas (the default): Eigen hands every float GEMM to OpenBLAS's sgemm (EIGEN_USE_BLAS).
#   Debian's OpenBLAS is built with DYNAMIC_ARCH, so it picks AVX2/FMA or AVX-512 kernels at run
#   time while our own code stays generic x86-64 (-O2, no -march): one binary for every CI and
#   cluster node. Measured by bench/gemm on one core of an AVX-512 EPYC, at the MLP's shapes and
#   at n=1024 it is several times faster than Eigen's own kernels compiled for SSE2 (numbers in
#   bench/gemm's output and the perf report).
# eigen: Eigen's own header-only kernels; no extra library, SSE2 only without -march.
#
# Use: include(cmake/Blas.cmake) at the top level, then link `trellis_blas` PUBLIC into every
# library whose code multiplies Eigen matrices. The definition must reach EVERY translation unit
# that instantiates an Eigen float product in one binary (Eigen swaps in explicit
# specialisations under EIGEN_USE_BLAS; mixing both in one binary is an ODR violation), hence
# PUBLIC/INTERFACE rather than a per-file flag.
#
# Threads: the pthread build of OpenBLAS starts one thread per core unless told otherwise. A
# rank must call openblas_set_num_threads(cores it owns) (TRELLIS_BLAS_OPENBLAS is defined so
# code can tell), or two ranks on two cores run four GEMM threads.

set(TRELLIS_BLAS "openblas" CACHE STRING "GEMM backend of the training engine: openblas|eigen")
set_property(CACHE TRELLIS_BLAS PROPERTY STRINGS openblas eigen)

add_library(trellis_blas INTERFACE)

if(TRELLIS_BLAS STREQUAL "openblas")
  find_package(PkgConfig REQUIRED)
  # Debian's openblas.pc points at the pthread build; at run time the libopenblas.so.0
  # alternative (pthread or serial) is what loads, both with the same ABI.
  pkg_check_modules(OPENBLAS IMPORTED_TARGET openblas)
  if(NOT OPENBLAS_FOUND)
    message(FATAL_ERROR "TRELLIS_BLAS=openblas but OpenBLAS was not found: install "
                        "libopenblas-dev (scripts/setup does), or configure with -DTRELLIS_BLAS=eigen")
  endif()
  target_link_libraries(trellis_blas INTERFACE PkgConfig::OPENBLAS)
  target_compile_definitions(trellis_blas INTERFACE EIGEN_USE_BLAS TRELLIS_BLAS_OPENBLAS=1)
  message(STATUS "Trellis GEMM: OpenBLAS ${OPENBLAS_VERSION} (EIGEN_USE_BLAS)")
elseif(TRELLIS_BLAS STREQUAL "eigen")
  message(STATUS "Trellis GEMM: Eigen's own kernels")
else()
  message(FATAL_ERROR "TRELLIS_BLAS must be openblas or eigen, got '${TRELLIS_BLAS}'")
endif()

# oneDNN (libdnnl-dev), optional: worker/kernels/gemm.cc calls its dnnl_sgemm when it is found
# and the CPU has AVX2+FMA (the rule and its measurements are in that file's header). oneDNN
# detects the CPU at run time (ONEDNN_MAX_CPU_ISA caps it), so one binary serves every node.
# Its CPU runtime is OpenMP: OpenMP::OpenMP_CXX gives omp_set_num_threads to size it per rank.
# A signal handler's frame pushed onto a thread inside dnnl_sgemm corrupts the heap (its JIT
# kernels keep data below the stack pointer), so the worker takes its signals on a thread of
# their own (worker/preemption.h); -DTRELLIS_ONEDNN=OFF builds without oneDNN.
option(TRELLIS_ONEDNN "Run the models' GEMM on oneDNN when libdnnl-dev is installed" ON)
find_library(TRELLIS_DNNL_LIBRARY NAMES dnnl)
find_path(TRELLIS_DNNL_INCLUDE oneapi/dnnl/dnnl.h)
find_package(OpenMP)
set(TRELLIS_ONEDNN_FOUND OFF)
if(TRELLIS_ONEDNN AND TRELLIS_DNNL_LIBRARY AND TRELLIS_DNNL_INCLUDE AND OpenMP_CXX_FOUND)
  set(TRELLIS_ONEDNN_FOUND ON)
  add_library(trellis_onednn INTERFACE)
  target_include_directories(trellis_onednn INTERFACE ${TRELLIS_DNNL_INCLUDE})
  target_link_libraries(trellis_onednn INTERFACE ${TRELLIS_DNNL_LIBRARY} OpenMP::OpenMP_CXX)
  message(STATUS "Trellis GEMM: oneDNN ${TRELLIS_DNNL_LIBRARY} (dnnl_sgemm, chosen at run time)")
else()
  message(STATUS "Trellis GEMM: oneDNN off (-DTRELLIS_ONEDNN=OFF) or not found (libdnnl-dev): "
                 "OpenBLAS/Eigen only")
endif()
