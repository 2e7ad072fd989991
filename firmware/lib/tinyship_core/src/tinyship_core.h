/*
 * tinyship_core.h - portable device core of the tinyship firmware (C API).
 *
 * Frame codec (COBS + CRC-32), command dispatch, device-info record,
 * statistics, text mode and the MLPerf Tiny DUT text mode. No Arduino, no
 * TFLM, no dynamic allocation, no exceptions, no RTTI. The core reaches the
 * outside world only through ts_platform_t (write bytes, read a microsecond
 * clock, run one inference, optional persistent storage).
 *
 * Every function returns ts_status_t (or a plain value documented as such),
 * checks its preconditions and never writes outside caller-owned buffers.
 * The wire protocol is specified in firmware/PROTOCOL.md (protocol version 2);
 * tests/test_firmware.py checks that every code below is documented there.
 */
#ifndef TINYSHIP_CORE_H
#define TINYSHIP_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Protocol constants                                                  */
/* ------------------------------------------------------------------ */

/* 2: model slots (commands 0x10-0x16, INFO tags 0x1F-0x21, status codes 16-27).
 * Hosts of version 1 keep working: no version-1 command or tag changed. */
#define TS_PROTOCOL_VERSION 2u
/* Largest payload of one packet, both directions. Sized for a batch of
 * small tabular vectors and for MCUs with 32 KB of RAM (the core keeps one
 * receive and one transmit packet). */
#define TS_MAX_PAYLOAD 1024u
/* cmd:u8 + seq:u16 + len:u16 before the payload, crc32:u32 after it. */
#define TS_HEADER_SIZE 5u
#define TS_CRC_SIZE 4u
#define TS_MAX_PACKET (TS_HEADER_SIZE + TS_MAX_PAYLOAD + TS_CRC_SIZE)
/* COBS adds one byte per 254 bytes (+1); the wire adds a 0x00 on each side. */
#define TS_COBS_MAX_ENCODED(n) ((n) + ((n) / 254u) + 1u)
#define TS_MAX_WIRE_FRAME (TS_COBS_MAX_ENCODED(TS_MAX_PACKET) + 2u)
/* Sequence number used in error replies to frames that could not be decoded. */
#define TS_SEQ_UNKNOWN 0xFFFFu
/* Response command = request command | TS_RESPONSE_FLAG. */
#define TS_RESPONSE_FLAG 0x80u
/* A partly received frame is dropped after this much silence (microseconds). */
#define TS_FRAME_TIMEOUT_US 500000u
/* Longest text / MLPerf command line, without its terminator. */
#define TS_MAX_LINE 256u
/* Longest reason string in an error reply. */
#define TS_MAX_REASON 40u
/* Largest model input in int8 elements (= bytes): the size of the MLPerf `db`
 * buffer the core keeps. A build setting, so a board pays only for what it
 * needs: set it per PlatformIO env (build_flags = -DTS_MAX_INPUT_BYTES=27648 for
 * the MLPerf vision input, 96x96x3). The default fits MCUs with 32 KB of RAM.
 * A binary INFER carries at most TS_MAX_PAYLOAD - 2 input bytes whatever this
 * is; larger inputs are loaded with MLPerf `db` commands only. */
#ifndef TS_MAX_INPUT_BYTES
#define TS_MAX_INPUT_BYTES 1022u
#endif
/* MLPerf Tiny benchmark name printed by `profile%` (m-model-[...]) when the
 * configuration gives none; see ts_config_t.mlperf_model. */
#define TS_MLPERF_MODEL_DEFAULT "ad01"

/* ------------------------------------------------------------------ */
/* Commands: X(name, code, short description). One list, used for the */
/* enum and for the name table. Codes 0x01-0x0F core, 0x10-0x1F        */
/* reserved for flash slots / rollback, 0x20-0x3F reserved for board   */
/* extensions, 0x40-0x7E reserved, 0x00 and 0x7F invalid. Responses    */
/* set bit 7; 0xFF is the error reply.                                 */
/* ------------------------------------------------------------------ */
#define TS_COMMAND_LIST(X)                                            \
  X(TS_CMD_PING, 0x01, "ping")                                        \
  X(TS_CMD_HELLO, 0x02, "hello")                                      \
  X(TS_CMD_INFER, 0x03, "infer")                                      \
  X(TS_CMD_STATS, 0x04, "stats")                                      \
  X(TS_CMD_RESET_STATS, 0x05, "reset_stats")                          \
  X(TS_CMD_SLOT_INFO, 0x10, "slot_info")                              \
  X(TS_CMD_SLOT_BEGIN, 0x11, "slot_begin")                            \
  X(TS_CMD_SLOT_WRITE, 0x12, "slot_write")                            \
  X(TS_CMD_SLOT_END, 0x13, "slot_end")                                \
  X(TS_CMD_REBOOT, 0x14, "reboot")                                    \
  X(TS_CMD_SLOT_CONFIRM, 0x15, "slot_confirm")                        \
  X(TS_CMD_SLOT_REVERT, 0x16, "slot_revert")                          \
  X(TS_CMD_ERROR, 0xFF, "error")

#define TS_X_ENUM(name, code, text) name = code,
typedef enum ts_command { TS_COMMAND_LIST(TS_X_ENUM) } ts_command_t;

/* ------------------------------------------------------------------ */
/* Status / error codes: X(name, code, short reason). The same numbers */
/* are the `code` byte of an error reply on the wire. Codes marked     */
/* "API" in PROTOCOL.md are returned by functions and never sent.      */
/* ------------------------------------------------------------------ */
#define TS_STATUS_LIST(X)                                             \
  X(TS_OK, 0, "ok")                                                   \
  X(TS_ERR_BAD_CRC, 1, "bad crc")                                     \
  X(TS_ERR_BAD_LENGTH, 2, "bad length")                               \
  X(TS_ERR_BAD_FRAMING, 3, "bad framing")                             \
  X(TS_ERR_UNKNOWN_COMMAND, 4, "unknown command")                     \
  X(TS_ERR_WRONG_INPUT_SIZE, 5, "wrong input size")                   \
  X(TS_ERR_INFERENCE_FAILED, 6, "inference failed")                   \
  X(TS_ERR_BUSY, 7, "busy")                                           \
  X(TS_ERR_BAD_PAYLOAD, 8, "bad payload")                             \
  X(TS_ERR_BATCH_TOO_LARGE, 9, "batch too large")                     \
  X(TS_ERR_MODEL_INVALID, 10, "model invalid")                        \
  X(TS_ERR_FRAME_TIMEOUT, 11, "frame timeout")                        \
  X(TS_ERR_INVALID_ARGUMENT, 12, "invalid argument")                  \
  X(TS_ERR_BUFFER_TOO_SMALL, 13, "buffer too small")                  \
  X(TS_ERR_IO, 14, "write failed")                                    \
  X(TS_ERR_STORAGE, 15, "storage failed")                             \
  X(TS_ERR_NO_SLOTS, 16, "no model slots")                            \
  X(TS_ERR_SLOT_HEADER, 17, "bad slot image header")                  \
  X(TS_ERR_SLOT_PROFILE, 18, "profile differs from firmware")         \
  X(TS_ERR_SLOT_OP, 19, "operator not in firmware")                   \
  X(TS_ERR_SLOT_ARENA, 20, "arena need above firmware arena")         \
  X(TS_ERR_SLOT_SHAPE, 21, "input/output above firmware buffers")     \
  X(TS_ERR_SLOT_SIZE, 22, "image larger than a slot")                 \
  X(TS_ERR_SLOT_SEQUENCE, 23, "sequence not newer than slots")        \
  X(TS_ERR_SLOT_ORDER, 24, "chunk out of order")                      \
  X(TS_ERR_SLOT_RANGE, 25, "write past the image end")                \
  X(TS_ERR_SLOT_VERIFY, 26, "slot verify failed")                     \
  X(TS_ERR_SLOT_STATE, 27, "not allowed in this slot state")          \
  X(TS_ERR_FLASH, 28, "flash operation failed")

typedef enum ts_status { TS_STATUS_LIST(TS_X_ENUM) TS_STATUS_COUNT_ } ts_status_t;
#undef TS_X_ENUM
/* Number of status codes (size of the STATS error-counter array). */
#define TS_STATUS_COUNT 29u

/* ------------------------------------------------------------------ */
/* HELLO / INFO TLV tags: tag:u8, len:u8, value[len] (little endian).  */
/* X(name, tag, value type). Unknown tags must be skipped by hosts.    */
/* ------------------------------------------------------------------ */
#define TS_TLV_LIST(X)                                                \
  X(TS_TLV_PROTOCOL_VERSION, 0x01, "u8")                              \
  X(TS_TLV_FIRMWARE_VERSION, 0x02, "str")                             \
  X(TS_TLV_MODEL_VERSION, 0x03, "str")                                \
  X(TS_TLV_MODEL_SHA256, 0x04, "str")                                 \
  X(TS_TLV_MODEL_CRC_OK, 0x05, "u8")                                  \
  X(TS_TLV_MODEL_CRC32, 0x06, "u32")                                  \
  X(TS_TLV_PROFILE, 0x07, "str")                                      \
  X(TS_TLV_BOARD, 0x08, "str")                                        \
  X(TS_TLV_ARENA_USED, 0x09, "u32")                                   \
  X(TS_TLV_ARENA_SIZE, 0x0A, "u32")                                   \
  X(TS_TLV_INPUT_SHAPE, 0x0B, "i32[]")                                \
  X(TS_TLV_OUTPUT_SHAPE, 0x0C, "i32[]")                               \
  X(TS_TLV_INPUT_DTYPE, 0x0D, "u8")                                   \
  X(TS_TLV_OUTPUT_DTYPE, 0x0E, "u8")                                  \
  X(TS_TLV_INPUT_SCALE, 0x0F, "f32")                                  \
  X(TS_TLV_INPUT_ZERO_POINT, 0x10, "i32")                             \
  X(TS_TLV_OUTPUT_SCALE, 0x11, "f32")                                 \
  X(TS_TLV_OUTPUT_ZERO_POINT, 0x12, "i32")                            \
  X(TS_TLV_UPTIME_US, 0x13, "u64")                                    \
  X(TS_TLV_BOOT_COUNT, 0x14, "u32")                                   \
  X(TS_TLV_RESET_REASON, 0x15, "u8")                                  \
  X(TS_TLV_SELF_TEST, 0x16, "selftest")                               \
  X(TS_TLV_MAX_PAYLOAD, 0x17, "u16")                                  \
  X(TS_TLV_GIT_COMMIT, 0x18, "str")                                   \
  X(TS_TLV_BUILD_TIME, 0x19, "str")                                   \
  X(TS_TLV_INPUT_SIZE, 0x1A, "u32")                                   \
  X(TS_TLV_OUTPUT_SIZE, 0x1B, "u32")                                  \
  X(TS_TLV_TARGET_MEAN, 0x1C, "f32")                                  \
  X(TS_TLV_TARGET_SCALE, 0x1D, "f32")                                  \
  X(TS_TLV_LINK, 0x1E, "link")                                        \
  X(TS_TLV_DEVICE_ID, 0x1F, "bytes")                                  \
  X(TS_TLV_RUNNING, 0x20, "running")                                  \
  X(TS_TLV_SLOT_CAPACITY, 0x21, "u32")

#define TS_X_ENUM(name, code, text) name = code,
typedef enum ts_tlv_tag { TS_TLV_LIST(TS_X_ENUM) } ts_tlv_tag_t;
#undef TS_X_ENUM

/* Tensor element types (TS_TLV_*_DTYPE). Numbers follow TfLiteType. */
typedef enum ts_dtype { TS_DTYPE_FLOAT32 = 1, TS_DTYPE_INT8 = 9 } ts_dtype_t;

/* Reset reason (TS_TLV_RESET_REASON); omitted from INFO when unknown. */
typedef enum ts_reset_reason {
  TS_RESET_UNKNOWN = 0,
  TS_RESET_POWER_ON = 1,
  TS_RESET_PIN = 2,
  TS_RESET_WATCHDOG = 3,
  TS_RESET_SOFTWARE = 4,
  TS_RESET_BROWNOUT = 5,
  TS_RESET_LOCKUP = 6,
  TS_RESET_WAKEUP = 7,
  TS_RESET_OTHER = 8
} ts_reset_reason_t;

/* Model CRC check (TS_TLV_MODEL_CRC_OK). */
typedef enum ts_crc_check {
  TS_CRC_MISMATCH = 0,
  TS_CRC_OK = 1,
  TS_CRC_NOT_CHECKED = 2
} ts_crc_check_t;

/* Self-test outcome (first byte of TS_TLV_SELF_TEST). */
typedef enum ts_self_test_status {
  TS_SELF_TEST_PASS = 0,
  TS_SELF_TEST_FAIL = 1,         /* an output differed by more than the tolerance */
  TS_SELF_TEST_NOT_RUN = 2,      /* no golden vectors configured */
  TS_SELF_TEST_INFER_ERROR = 3   /* the inference callback returned an error */
} ts_self_test_status_t;

/* What carries the bytes (first field of TS_TLV_LINK): tells a host whether a
 * baud rate is physical (a UART moves baud/10 bytes/s each way, 8N1) or not. */
typedef enum ts_link_kind {
  TS_LINK_UNKNOWN = 0, /* not reported: TS_TLV_LINK is omitted from INFO */
  TS_LINK_UART = 1,    /* a UART (or a paced emulation of one) at `baud`, 8N1 */
  TS_LINK_USB_CDC = 2, /* USB CDC ACM: the baud rate is ignored, USB flow control */
  TS_LINK_STREAM = 3   /* another byte stream without a byte rate (pty, TCP) */
} ts_link_kind_t;

/* The serial link as the board knows it, reported in INFO (TS_TLV_LINK). */
typedef struct ts_link {
  uint32_t kind;      /* ts_link_kind_t */
  uint32_t baud;      /* bit/s of a UART (> 0); 0 for the other kinds */
  /* Bytes the board can receive while it is busy with a request (its UART receive
   * buffer); more are lost. A host keeps the frames it sent after the oldest one
   * still unanswered within this many bytes (PROTOCOL.md). 0: no limit (the link
   * is flow controlled, e.g. USB). */
  uint32_t rx_window;
} ts_link_t;

/* Which model runs (first byte of TS_TLV_RUNNING): the factory model compiled into
 * the firmware, or the model of slot A or B. Same numbers as ts_boot_source. */
typedef enum ts_running_source {
  TS_RUNNING_FACTORY = 0,
  TS_RUNNING_SLOT_A = 1,
  TS_RUNNING_SLOT_B = 2
} ts_running_source_t;

/* In what state (second byte of TS_TLV_RUNNING). Same numbers as ts_boot_mode. */
typedef enum ts_running_mode {
  TS_RUNNING_CONFIRMED = 0, /* confirmed slot, or the factory model */
  TS_RUNNING_TRIAL = 1      /* a new slot's first run: confirm it or it is reverted */
} ts_running_mode_t;

/* Longest hardware-unique device id (TS_TLV_DEVICE_ID), bytes. */
#define TS_MAX_DEVICE_ID 16u

/* Tensor shapes of a model the platform loaded (ts_platform_t.load_model). */
typedef struct ts_model_io {
  int32_t input_shape[8];
  int32_t output_shape[8];
  uint32_t input_rank;  /* 1..8 */
  uint32_t output_rank; /* 1..8 */
  uint32_t arena_used;  /* bytes the interpreter allocated (0 if unknown) */
} ts_model_io_t;

struct ts_flash; /* ts_flash.h */

/* Storage keys used by the core when storage callbacks are provided. */
#define TS_STORAGE_KEY_BOOT_COUNT 1u

/* ------------------------------------------------------------------ */
/* Platform interface and configuration                                */
/* ------------------------------------------------------------------ */

typedef struct ts_platform {
  void *user; /* passed back to every callback */
  /* Required. Write all `len` bytes; TS_OK or TS_ERR_IO. */
  ts_status_t (*write)(void *user, const uint8_t *data, size_t len);
  /* Required. Free-running microsecond clock; may wrap at 2^32. */
  uint32_t (*micros)(void *user);
  /* Required. One int8 inference: input[input_len] -> output[output_len].
   * TS_OK or TS_ERR_INFERENCE_FAILED. */
  ts_status_t (*infer)(void *user, const int8_t *input, size_t input_len,
                       int8_t *output, size_t output_len);
  /* Optional (both NULL or both set). Persistent key/value storage. */
  ts_status_t (*storage_read)(void *user, uint32_t key, uint8_t *data, size_t len);
  ts_status_t (*storage_write)(void *user, uint32_t key, const uint8_t *data, size_t len);
  /* Optional (NULL: `write` returns only when the bytes are on the wire). Block until
   * every byte passed to `write` has left the transmitter (Arduino: Serial.flush()).
   * The core calls it before it reads an MLPerf timestamp, so transmit time is never
   * timed. TS_OK or TS_ERR_IO. */
  ts_status_t (*flush)(void *user);
  /* Optional, required with model slots (ts_config_t.flash). Make `infer` run the
   * model at `model` (len bytes, 16-byte aligned; in memory-mapped flash for a slot
   * model, run in place) and report its shapes in *io. The health check of a trial:
   * TS_ERR_MODEL_INVALID when the model does not load (AllocateTensors failed). */
  ts_status_t (*load_model)(void *user, const uint8_t *model, size_t len, ts_model_io_t *io);
  /* Optional. Reset the board (REBOOT, SLOT_REVERT); the core has replied and flushed.
   * On a board it does not return; a host emulation returns and reboots later. */
  void (*reset)(void *user);
} ts_platform_t;

typedef struct ts_config {
  const char *firmware_version; /* semver, required */
  const char *model_version;    /* e.g. "v0003", required */
  const char *model_sha256;     /* 64 lowercase hex chars, required */
  const char *profile;          /* e.g. "tflm-arduino-2023", required */
  const char *board;            /* PlatformIO env name, required */
  const char *git_commit;       /* optional (NULL: omitted) */
  const char *build_time;       /* optional, UTC ISO 8601 (NULL: omitted) */
  uint32_t input_size;          /* int8 elements, 1..TS_MAX_INPUT_BYTES */
  uint32_t output_size;         /* int8 elements, 1..TS_MAX_PAYLOAD-6 */
  const int32_t *input_shape;   /* input_rank dims, may be NULL if rank 0 */
  const int32_t *output_shape;
  uint32_t input_rank;          /* 0..8 */
  uint32_t output_rank;         /* 0..8 */
  float input_scale;
  float output_scale;
  int32_t input_zero_point;
  int32_t output_zero_point;
  /* An output q in target units (MLPerf results%; both reported in INFO):
   *   target_mean + target_scale * (q - output_zero_point) * output_scale.
   * Regression models predict the standardized target so that their int8 range
   * covers the data; classification (and older models) use the identity 0, 1.
   * target_mean must be finite, target_scale finite and non-zero, so a
   * zero-initialised config is rejected rather than printing zeros. */
  float target_mean;
  float target_scale;
  uint32_t arena_size;          /* bytes reserved for the tensor arena */
  uint32_t arena_used;          /* bytes actually used (0 if unknown) */
  uint32_t model_crc32;         /* expected CRC-32 of the model */
  uint32_t model_crc_check;     /* ts_crc_check_t; INFER refused on MISMATCH */
  uint32_t boot_count;          /* used when no storage callbacks; 0 = unknown */
  uint32_t reset_reason;        /* ts_reset_reason_t */
  const int8_t *golden_inputs;  /* golden_count * input_size, may be NULL */
  const int8_t *golden_outputs; /* golden_count * output_size, may be NULL */
  uint32_t golden_count;
  uint32_t golden_tolerance_lsb; /* allowed |diff| per output element */
  /* MLPerf Tiny benchmark name for `profile%` (m-model-[...]): the runner picks its
   * test script by it (ad01, ic01, kws01, vww01). 1..64 characters from
   * [A-Za-z0-9_.-]; NULL means TS_MLPERF_MODEL_DEFAULT. */
  const char *mlperf_model;
  /* Hardware-unique device id (nRF52 FICR DEVICEID, RP2040 flash unique id, ESP32
   * efuse MAC), reported in INFO (TS_TLV_DEVICE_ID); NULL/0: omitted. <= 16 bytes. */
  const uint8_t *device_id;
  uint32_t device_id_len;
  /* Model slots (ts_flash.h; firmware/SLOTS.md). NULL: none, the factory model only,
   * slot commands answer TS_ERR_NO_SLOTS. With slots, platform.load_model is required
   * and the core chooses at init which model runs: a slot's (trial or confirmed) or
   * the factory model (factory_model below), whose metadata is the rest of this
   * config. */
  const struct ts_flash *flash;
  const uint8_t *factory_model; /* the compiled-in model (16-byte aligned) */
  uint32_t factory_model_len;
  /* Operator ids (TFLite BuiltinOperator numbers) the op resolver registers: a slot
   * image needing another is refused before anything is erased. */
  const uint16_t *ops;
  uint32_t n_ops;
} ts_config_t;

typedef struct ts_self_test {
  uint32_t status;        /* ts_self_test_status_t */
  uint32_t vectors;       /* number of golden vectors */
  uint32_t failed_vector; /* index of the first failing vector, 0xFFFF if none */
  uint32_t max_diff_lsb;  /* largest |device - golden| seen (all vectors run) */
} ts_self_test_t;

typedef struct ts_stats {
  uint32_t inference_count;
  uint32_t latency_min_us; /* 0 when inference_count == 0 */
  uint32_t latency_mean_us;
  uint32_t latency_max_us;
  uint32_t frames_ok;      /* frames decoded and answered without error */
  uint32_t errors[TS_STATUS_COUNT]; /* error replies sent, by code */
} ts_stats_t;

/* Opaque core instance living in caller-provided memory. */
typedef struct ts_core ts_core_t;

/* ------------------------------------------------------------------ */
/* Core API                                                            */
/* ------------------------------------------------------------------ */

/* Bytes of memory one core instance needs (alignment: 8 bytes). */
size_t ts_core_size(void);
/* Compile-time upper bound of ts_core_size() on every target, for static
 * buffers (checked by a static_assert in the core): 6,144 bytes of frame, line,
 * output and model-slot buffers plus the MLPerf input buffer, rounded up to 8.
 * 7,168 bytes with the default TS_MAX_INPUT_BYTES, 33,792 with 27,648. */
#define TS_CORE_MEM_BYTES ((6144u + TS_MAX_INPUT_BYTES + 7u) & ~7u)

/* Initialise a core in `mem` (mem_len >= ts_core_size(), 8-byte aligned).
 * Copies *config and *platform (strings and arrays are referenced, they must
 * outlive the core), updates the boot counter in storage, runs the golden
 * self-test and writes the boot banner line. */
ts_status_t ts_core_init(void *mem, size_t mem_len, const ts_config_t *config,
                         const ts_platform_t *platform, ts_core_t **out_core);

/* Feed received bytes (any split). Replies are written through
 * platform->write before this returns. TS_ERR_BUSY if re-entered. */
ts_status_t ts_core_feed(ts_core_t *core, const uint8_t *data, size_t len);

ts_status_t ts_core_get_stats(const ts_core_t *core, ts_stats_t *out);
ts_status_t ts_core_reset_stats(ts_core_t *core);
ts_status_t ts_core_get_self_test(const ts_core_t *core, ts_self_test_t *out);
/* Write the boot banner line again (e.g. when a USB serial port is opened
 * after boot and the first banner was lost). */
ts_status_t ts_core_write_banner(ts_core_t *core);
/* Which model runs and in what state (TS_TLV_RUNNING). */
ts_status_t ts_core_get_running(const ts_core_t *core, uint32_t *source, uint32_t *mode);
/* Update the arena bytes used (known only after the runner allocated). */
ts_status_t ts_core_set_arena_used(ts_core_t *core, uint32_t arena_used);
/* Report the serial link in INFO (TS_TLV_LINK; omitted until this is called, or
 * with kind TS_LINK_UNKNOWN). A UART needs baud > 0, the other kinds baud 0;
 * kind above TS_LINK_STREAM is TS_ERR_INVALID_ARGUMENT. The glue knows its Serial:
 * call it after ts_core_init. */
ts_status_t ts_core_set_link(ts_core_t *core, const ts_link_t *link);

/* ------------------------------------------------------------------ */
/* Codec helpers (also used by tests and hosts through ctypes)         */
/* ------------------------------------------------------------------ */

/* Short reason for a status code ("bad crc"); "?" when out of range. */
const char *ts_status_str(ts_status_t status);
/* Enum name ("TS_ERR_BAD_CRC"); "?" when out of range. */
const char *ts_status_name(ts_status_t status);
/* Command name ("ping"); "?" when unknown. */
const char *ts_command_name(uint8_t cmd);

/* CRC-32 IEEE 802.3 (zlib crc32): pass 0 to start, the result to continue. */
uint32_t ts_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS encode/decode without delimiters. */
ts_status_t ts_cobs_encode(const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t out_cap, size_t *out_len);
ts_status_t ts_cobs_decode(const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t out_cap, size_t *out_len);

/* Build a complete wire frame 0x00 COBS(packet) 0x00 into out. */
ts_status_t ts_frame_encode(uint8_t cmd, uint16_t seq, const uint8_t *payload,
                            size_t payload_len, uint8_t *out, size_t out_cap,
                            size_t *out_len);

/* Decode the bytes between two 0x00 delimiters. On TS_ERR_BAD_LENGTH after a
 * good CRC, *cmd and *seq are valid. */
ts_status_t ts_frame_decode(const uint8_t *body, size_t body_len, uint8_t *cmd,
                            uint16_t *seq, uint8_t *payload, size_t payload_cap,
                            size_t *payload_len);

#ifdef __cplusplus
}
#endif

#endif /* TINYSHIP_CORE_H */
