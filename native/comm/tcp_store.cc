// Only built with Gloo (the client implements its Store interface).
#ifdef STEPSCOPE_HAVE_GLOO
#include "comm/tcp_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/error.h"

namespace stepscope {
namespace {

void sendAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw std::runtime_error(std::string("tcp store: send failed: ") + std::strerror(errno));
    p += k;
    n -= size_t(k);
  }
}

void recvAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) throw std::runtime_error("tcp store: connection closed by the other side");
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) throw std::runtime_error("tcp store: no reply within the timeout (is rank 0 stopped?)");
    if (k < 0) throw std::runtime_error(std::string("tcp store: receive failed: ") + std::strerror(errno));
    p += k;
    n -= size_t(k);
  }
}

// A send or receive on `fd` (option SO_SNDTIMEO or SO_RCVTIMEO) fails after `timeout` without progress.
void setTimeout(int fd, int option, std::chrono::milliseconds timeout) {
  timeval limit{};
  limit.tv_sec = long(timeout.count() / 1000);
  limit.tv_usec = long(timeout.count() % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, option, &limit, sizeof limit);
}

// Keys and values are small (addresses); a bound keeps a corrupt or hostile
// length from allocating gigabytes.
constexpr uint32_t kMaxField = 1u << 20;

void sendMessage(int fd, char op, const std::string& key, const std::vector<char>& value) {
  std::vector<char> out(1 + 4 + key.size() + 4 + value.size());
  char* p = out.data();
  *p++ = op;
  uint32_t k = htonl(uint32_t(key.size())), v = htonl(uint32_t(value.size()));
  std::memcpy(p, &k, 4), p += 4;
  std::memcpy(p, key.data(), key.size()), p += key.size();
  std::memcpy(p, &v, 4), p += 4;
  if (!value.empty()) std::memcpy(p, value.data(), value.size());
  sendAll(fd, out.data(), out.size());
}

void receiveMessage(int fd, char* op, std::string* key, std::vector<char>* value) {
  recvAll(fd, op, 1);
  uint32_t n;
  recvAll(fd, &n, 4);
  n = ntohl(n);
  if (n > kMaxField) throw std::runtime_error("tcp store: key of " + std::to_string(n) + " bytes is over the limit");
  key->resize(n);
  if (n) recvAll(fd, key->data(), n);
  recvAll(fd, &n, 4);
  n = ntohl(n);
  if (n > kMaxField) throw std::runtime_error("tcp store: value of " + std::to_string(n) + " bytes is over the limit");
  value->resize(n);
  if (n) recvAll(fd, value->data(), n);
}

// Probes after 60 s idle, every 10 s, 6 unanswered: the receive then fails.
void keepAlive(int fd) {
  int on = 1, idle = 60, interval = 10, count = 6;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

// The server's state is process-wide and never destroyed: its threads are
// detached and may outlive every communicator.
struct ServerState {
  std::mutex mutex;
  std::map<std::string, std::vector<char>> values;
  std::set<int> ports;
};
ServerState& serverState() {
  static ServerState* state = new ServerState();
  return *state;
}

void serveConnection(int fd) {
  ServerState& s = serverState();
  try {
    for (;;) {
      char op;
      std::string key;
      std::vector<char> value;
      receiveMessage(fd, &op, &key, &value);
      if (op == 'S') {
        {
          std::lock_guard<std::mutex> lock(s.mutex);
          s.values[key] = std::move(value);
        }
        sendMessage(fd, 'K', key, {});
      } else if (op == 'G') {
        std::vector<char> found;
        bool present;
        {
          std::lock_guard<std::mutex> lock(s.mutex);
          auto it = s.values.find(key);
          present = it != s.values.end();
          if (present) found = it->second;
        }
        sendMessage(fd, present ? 'V' : 'N', key, found);
      } else {
        break;  // not our protocol: drop the connection
      }
    }
  } catch (const std::exception&) {
    // The client went away (normal at the end of a rendezvous).
  }
  ::close(fd);
}

}  // namespace

void startTcpStoreServer(int port) {
  ServerState& s = serverState();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.ports.count(port)) return;
  }
  if (port < 1 || port > 65535) throw Error("ERR_INVALID_ARG", "tcp store: port " + std::to_string(port) + " is not in 1..65535");
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  bool v6 = fd >= 0;
  if (!v6) fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("ERR_COMM", std::string("tcp store: socket() failed: ") + std::strerror(errno));
  int one = 1, zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // accept IPv4 clients too
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons(uint16_t(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(uint16_t(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (rc != 0 || ::listen(fd, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error("ERR_COMM", "tcp store: rank 0 cannot listen on port " + std::to_string(port) + " (MASTER_PORT): " + why);
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.ports.insert(port);
  }
  auto acceptLoop = [fd] {
    for (;;) {
      int client = ::accept(fd, nullptr, nullptr);
      if (client < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        // Out of descriptors or memory for now: wait and go on (giving up would
        // leave the port listening with nobody to answer).
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          continue;
        }
        return;
      }
      int one = 1;
      ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      // A client's connection idles for the whole run between rendezvous, so
      // no receive timeout; keepalive probes instead end the thread of a
      // client whose host vanished (no FIN ever comes): ~2 min of silence.
      keepAlive(client);
      // No thread for it (a thread limit): that client is turned away, the
      // server lives on (an exception out of this thread would end the process).
      try {
        std::thread(serveConnection, client).detach();
      } catch (...) {
        ::close(client);
      }
    }
  };
  try {
    std::thread(acceptLoop).detach();
  } catch (const std::exception& e) {
    ::close(fd);
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.ports.erase(port);
    }
    throw Error("ERR_COMM", std::string("tcp store: rank 0 cannot start its server thread: ") + e.what());
  }
}

TcpStoreClient::TcpStoreClient(const std::string& host, int port, std::chrono::milliseconds timeout)
    : host_(host), port_(port), timeout_(timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string lastError = "no attempt";
  while (fd_ < 0) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
    if (gai != 0) {
      lastError = std::string("cannot resolve the host: ") + ::gai_strerror(gai);
    } else {
      for (addrinfo* a = list; a && fd_ < 0; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        // connect() waits at most what is left of the deadline (Linux applies SO_SNDTIMEO to it), not the kernel's ~2 minutes.
        setTimeout(fd, SO_SNDTIMEO, std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())));
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          fd_ = fd;
        } else {
          lastError = std::strerror(errno);
          ::close(fd);
        }
      }
      ::freeaddrinfo(list);
    }
    if (fd_ >= 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("tcp store at " + address() + " not reachable within " + std::to_string(timeout.count()) +
                               " ms (is rank 0 running, and are MASTER_ADDR and MASTER_PORT right?): " + lastError);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // The server answers every request at once (a get of a missing key is a
  // reply too): a reply that takes the whole timeout means rank 0 is gone or
  // stopped, and the rendezvous fails then instead of blocking for ever.
  setTimeout(fd_, SO_RCVTIMEO, timeout);
  setTimeout(fd_, SO_SNDTIMEO, timeout);
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string TcpStoreClient::address() const { return host_ + ":" + std::to_string(port_); }

void TcpStoreClient::set(const std::string& key, const std::vector<char>& data) {
  std::lock_guard<std::mutex> lock(mutex_);
  sendMessage(fd_, 'S', key, data);
  char op;
  std::string k;
  std::vector<char> v;
  receiveMessage(fd_, &op, &k, &v);
  if (op != 'K') throw std::runtime_error("tcp store at " + address() + ": unexpected reply to set");
}

bool TcpStoreClient::tryGet(const std::string& key, std::vector<char>* value) {
  std::lock_guard<std::mutex> lock(mutex_);
  sendMessage(fd_, 'G', key, {});
  char op;
  std::string k;
  receiveMessage(fd_, &op, &k, value);
  if (op != 'V' && op != 'N') throw std::runtime_error("tcp store at " + address() + ": unexpected reply to get");
  return op == 'V';
}

std::vector<char> TcpStoreClient::get(const std::string& key) {
  wait({key}, timeout_);
  std::vector<char> value;
  if (!tryGet(key, &value)) throw std::runtime_error("tcp store at " + address() + ": key " + key + " vanished");
  return value;
}

void TcpStoreClient::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<char> ignored;
  for (const std::string& key : keys) {
    while (!tryGet(key, &ignored)) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("tcp store at " + address() + ": key " + key + " not set within " +
                                 std::to_string(timeout.count()) + " ms (a rank did not arrive)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

}  // namespace stepscope

#endif  // STEPSCOPE_HAVE_GLOO
