// A key-value rendezvous store over TCP, for ranks on different machines
// (the torchrun convention: rank 0 serves the store at MASTER_ADDR:MASTER_PORT,
// every rank, rank 0 included, is a client). Debian's Gloo ships only File,
// Hash and Redis stores, hence this one.
//
// Wire format, both directions: u8 op, u32 key length, key, u32 value length,
// value. Ops: 'S' set (reply 'K'), 'G' get (reply 'V' + value, or 'N' when the
// key is absent; the client polls until its deadline).
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

namespace stepscope {

// Starts (once per process and port) the server thread of the store on
// `port`, listening on all interfaces. It lives until the process exits: ranks
// may still read keys after this rank has connected. Throws ERR_COMM when the
// port cannot be bound.
void startTcpStoreServer(int port);

class TcpStoreClient : public gloo::rendezvous::Store {
 public:
  // Connects to host:port, retrying until timeout (the server may start
  // later than this client). Throws std::runtime_error with the address.
  TcpStoreClient(const std::string& host, int port, std::chrono::milliseconds timeout);
  ~TcpStoreClient() override;

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  // Returns false when the key is absent.
  bool tryGet(const std::string& key, std::vector<char>* value);
  std::string address() const;

  std::string host_;
  int port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::mutex mutex_;  // one request in flight per connection
};

}  // namespace stepscope
