// kVec activations (fp32 or bf16) read or written as one access: 16 bytes in
// fp32, 8 in bf16, so a warp moves 512 (256) bytes per instruction instead of
// 128 (64) and the memory-bound kernels keep enough bytes in flight. The
// caller checks that the elements are contiguous and the address aligned to
// sizeof(Vec<T>) (isVecAligned): cudaMalloc gives 256-byte alignment.
#pragma once
#include <cstdint>

namespace stepscope {
namespace cudaops {

constexpr int kVec = 4;

template <typename T>
struct alignas(kVec * sizeof(T)) Vec {
  T v[kVec];
};

#ifdef __CUDACC__
template <typename T>
__device__ __forceinline__ Vec<T> loadVec(const T* p) { return *reinterpret_cast<const Vec<T>*>(p); }
template <typename T>
__device__ __forceinline__ void storeVec(T* p, const Vec<T>& v) { *reinterpret_cast<Vec<T>*>(p) = v; }
#endif

template <typename T>
inline bool isVecAligned(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % sizeof(Vec<T>) == 0; }

}  // namespace cudaops
}  // namespace stepscope
