/// An address a stream socket can connect to, as `getaddrinfo` gave it.
struct SocketAddress: Sendable {
    let family: Int32
    let bytes: [UInt8]
}
