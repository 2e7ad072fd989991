// tinyship_core_framing.cpp - the wire format (PROTOCOL.md): CRC-32, COBS, packet
// parsing, the frame reader (receive buffer -> packet) and the frame writer (packet ->
// output), and the codec API. See tinyship_core_internal.h for the other files.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace {

struct BufferSink {
  uint8_t *out;
  size_t cap;
  size_t len;
  bool put(const uint8_t *p, size_t n) {
    if (n > cap - len) return false;
    if (n != 0) memcpy(out + len, p, n);
    len += n;
    return true;
  }
};

}  // namespace

namespace ts_internal {

// ---------------------------------------------------------- packet parser --

// Steps 3-5 of the receiver rules on a decoded packet.
ts_status_t parse_packet(const uint8_t *buf, size_t n, Packet *pkt) {
  if (n < kMinPacket) return TS_ERR_BAD_LENGTH;
  const size_t body = n - TS_CRC_SIZE;
  if (ts_crc32(0, buf, body) != get_le32(buf + body)) return TS_ERR_BAD_CRC;
  pkt->cmd = buf[0];
  pkt->seq = get_le16(buf + 1);
  pkt->payload = buf + TS_HEADER_SIZE;
  pkt->len = body - TS_HEADER_SIZE;
  const uint16_t declared = get_le16(buf + 3);
  if (declared != pkt->len || declared > TS_MAX_PAYLOAD) return TS_ERR_BAD_LENGTH;
  return TS_OK;
}

// ------------------------------------------------------------ binary send --

struct CoreSink {
  ts_core *c;
  bool put(const uint8_t *p, size_t n) {
    out_bytes(c, p, n);
    return true;
  }
};

// Send the packet whose payload (len bytes) is already in c->tx + header.
void send_packet(ts_core *c, uint8_t cmd, uint16_t seq, size_t len) {
  uint8_t *p = c->tx;
  p[0] = cmd;
  put_le16(p + 1, seq);
  put_le16(p + 3, static_cast<uint16_t>(len));
  const size_t body = TS_HEADER_SIZE + len;
  put_le32(p + body, ts_crc32(0, p, body));
  const uint8_t zero = 0;
  out_bytes(c, &zero, 1);
  CoreSink sink{c};
  (void)cobs_encode_to(p, body + TS_CRC_SIZE, sink);
  out_bytes(c, &zero, 1);
  flush(c);
}

void send_error(ts_core *c, ts_status_t code, uint8_t req_cmd, uint16_t seq) {
  const char *reason = ts_status_str(code);
  size_t n = bounded_strlen(reason, TS_MAX_REASON);
  if (n > TS_MAX_REASON) n = TS_MAX_REASON;
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  pl[0] = static_cast<uint8_t>(code);
  pl[1] = req_cmd;
  memcpy(pl + 2, reason, n);
  if (static_cast<unsigned>(code) < TS_STATUS_COUNT) c->errors[code]++;
  send_packet(c, TS_CMD_ERROR, seq, 2 + n);
}

void send_response(ts_core *c, const Packet &req, size_t len) {
  c->frames_ok++;
  send_packet(c, static_cast<uint8_t>(req.cmd | TS_RESPONSE_FLAG), req.seq, len);
}

// ------------------------------------------------------------ frame reader --

void rx_reset(ts_core *c) {
  c->rx_len = 0;
  c->rx_overflow = false;
  c->cobs.reset();
}

// A 0x00 closed a frame: check it, answer it, choose the next mode.
void end_frame(ts_core *c) {
  if (!c->cobs.started && !c->rx_overflow) return;  // empty frame: resync only
  ts_status_t st = TS_OK;
  Packet pkt{};
  if (c->rx_overflow) {
    st = TS_ERR_BAD_LENGTH;
  } else if (!c->cobs.complete()) {
    st = TS_ERR_BAD_FRAMING;
  } else {
    st = parse_packet(c->rx, c->rx_len, &pkt);
  }
  rx_reset(c);  // pkt still points into c->rx, which is left untouched
  if (st == TS_OK) {
    c->mode = kModeText;
    dispatch_packet(c, pkt);
    return;
  }
  // After a good CRC (length mismatch) the header is trusted: echo it, and the
  // stream is in sync. Otherwise stay in frame state: the closing 0x00 may open
  // the next frame.
  const bool trusted = (pkt.payload != nullptr);
  send_error(c, st, trusted ? pkt.cmd : 0, trusted ? pkt.seq : static_cast<uint16_t>(TS_SEQ_UNKNOWN));
  c->mode = trusted ? kModeText : kModeFrame;
}

}  // namespace ts_internal

// ------------------------------------------------------------------- API --

extern "C" {

uint32_t ts_crc32(uint32_t crc, const uint8_t *data, size_t len) {
  if (data == nullptr) return crc;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

ts_status_t ts_cobs_encode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                           size_t *out_len) {
  if ((in == nullptr && in_len != 0) || out == nullptr || out_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *out_len = 0;
  BufferSink sink{out, out_cap, 0};
  if (!cobs_encode_to(in, in_len, sink)) return TS_ERR_BUFFER_TOO_SMALL;
  *out_len = sink.len;
  return TS_OK;
}

ts_status_t ts_cobs_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                           size_t *out_len) {
  if ((in == nullptr && in_len != 0) || (out == nullptr && out_cap != 0) ||
      out_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *out_len = 0;
  CobsDecoder dec;
  dec.reset();
  size_t n = 0;
  for (size_t i = 0; i < in_len; i++) {
    if (in[i] == 0) return TS_ERR_BAD_FRAMING;
    if (!dec.push(in[i], out, out_cap, &n)) return TS_ERR_BUFFER_TOO_SMALL;
  }
  if (!dec.complete()) return TS_ERR_BAD_FRAMING;
  *out_len = n;
  return TS_OK;
}

ts_status_t ts_frame_encode(uint8_t cmd, uint16_t seq, const uint8_t *payload,
                            size_t payload_len, uint8_t *out, size_t out_cap,
                            size_t *out_len) {
  if ((payload == nullptr && payload_len != 0) || out == nullptr || out_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *out_len = 0;
  if (payload_len > TS_MAX_PAYLOAD) return TS_ERR_BAD_LENGTH;
  uint8_t pkt[TS_MAX_PACKET];
  pkt[0] = cmd;
  put_le16(pkt + 1, seq);
  put_le16(pkt + 3, static_cast<uint16_t>(payload_len));
  if (payload_len != 0) memcpy(pkt + TS_HEADER_SIZE, payload, payload_len);
  const size_t body = TS_HEADER_SIZE + payload_len;
  put_le32(pkt + body, ts_crc32(0, pkt, body));
  BufferSink sink{out, out_cap, 0};
  const uint8_t zero = 0;
  if (!sink.put(&zero, 1) || !cobs_encode_to(pkt, body + TS_CRC_SIZE, sink) ||
      !sink.put(&zero, 1)) {
    return TS_ERR_BUFFER_TOO_SMALL;
  }
  *out_len = sink.len;
  return TS_OK;
}

ts_status_t ts_frame_decode(const uint8_t *body, size_t body_len, uint8_t *cmd, uint16_t *seq,
                            uint8_t *payload, size_t payload_cap, size_t *payload_len) {
  if ((body == nullptr && body_len != 0) || cmd == nullptr || seq == nullptr ||
      (payload == nullptr && payload_cap != 0) || payload_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *payload_len = 0;
  uint8_t pkt[TS_MAX_PACKET];
  CobsDecoder dec;
  dec.reset();
  size_t n = 0;
  for (size_t i = 0; i < body_len; i++) {
    if (body[i] == 0) return TS_ERR_BAD_FRAMING;
    if (!dec.push(body[i], pkt, sizeof(pkt), &n)) return TS_ERR_BAD_LENGTH;
  }
  if (!dec.complete()) return TS_ERR_BAD_FRAMING;
  Packet p{};
  const ts_status_t st = parse_packet(pkt, n, &p);
  if (p.payload != nullptr) {
    *cmd = p.cmd;
    *seq = p.seq;
  }
  if (st != TS_OK) return st;
  if (p.len > payload_cap) return TS_ERR_BUFFER_TOO_SMALL;
  if (p.len != 0) memcpy(payload, p.payload, p.len);
  *payload_len = p.len;
  return TS_OK;
}

}  // extern "C"
