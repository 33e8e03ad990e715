declare module 'bittorrent-dht' {
  const DHT: unknown
  export default DHT
}
