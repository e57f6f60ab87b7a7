// Errors raised anywhere in the native code. They are C++ exceptions that the
// N-API layer turns into JS errors carrying `code`; native code never aborts.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace stepscope {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }
  // More properties for the JS error (a CUDA error's status and layer): set
  // also where the error crosses a thread (a promise's worker) as a copy.
  virtual std::vector<std::pair<std::string, std::string>> details() const { return {}; }

 private:
  std::string code_;
};

}  // namespace stepscope
