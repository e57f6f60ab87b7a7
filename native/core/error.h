// Errors raised anywhere in the native code. They are C++ exceptions that the
// N-API layer turns into JS errors carrying `code`; native code never aborts.
#pragma once
#include <stdexcept>
#include <string>

namespace stepscope {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

}  // namespace stepscope
