/* ts_slot_image.h - the model slot image header: parse, validate, check compatibility
 * (draft for issue 11).
 *
 * A slot image is a header followed by the .tflite flatbuffer (the "body"), which starts
 * on a 16-byte boundary so TFLM can run it in place from memory-mapped flash.
 * firmware/SLOTS.md ("Slot image") has the byte layout this implements, and
 * host/tinyship/device/slot_image.py is the host encoder (tests/test_slot_image_codec.py
 * proves the two agree). No flash access, no allocation, no globals written: the parsed
 * header copies the scalar fields and points into the caller's buffer for the rest.
 */
#ifndef TS_SLOT_IMAGE_H
#define TS_SLOT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_SLOT_IMAGE_MAGIC_LEN 4u    /* "TSMH" */
#define TS_SLOT_IMAGE_VERSION 1u      /* format version this code reads */
#define TS_SLOT_IMAGE_FIXED_LEN 144u  /* fixed part; the variable part starts here */
#define TS_SLOT_IMAGE_CRC_OFFSET 140u /* header CRC-32 field */
#define TS_SLOT_IMAGE_ALIGN 16u       /* header length (= body offset) is a multiple */
#define TS_SLOT_VERSION_LEN 16u       /* registry model version: NUL-padded */
#define TS_SLOT_PROFILE_LEN 32u       /* target-runtime profile id: NUL-padded */
#define TS_SLOT_SHA256_LEN 32u
#define TS_SLOT_MAX_OPS 64u           /* operator ids a header may list */

extern const uint8_t ts_slot_image_magic[TS_SLOT_IMAGE_MAGIC_LEN];

typedef enum {
  TS_IMG_OK = 0,
  TS_IMG_ERR_NULL = 1,        /* a pointer argument is NULL */
  /* ts_slot_image_parse / ts_slot_image_parse_header */
  TS_IMG_ERR_TRUNCATED = 2,   /* the buffer ends inside the header */
  TS_IMG_ERR_MAGIC = 3,       /* not "TSMH" */
  TS_IMG_ERR_VERSION = 4,     /* format version is not TS_SLOT_IMAGE_VERSION */
  TS_IMG_ERR_HEADER_LEN = 5,  /* header length not a multiple of 16, below the fixed
                                 part, or not the length its variable part needs */
  TS_IMG_ERR_HEADER_CRC = 6,  /* header CRC-32 mismatch */
  TS_IMG_ERR_FIELD = 7,       /* a field out of range: zero model length, more than
                                 TS_SLOT_MAX_OPS operators, a string not NUL-padded, a
                                 non-finite target_mean, a non-finite or zero
                                 target_scale */
  TS_IMG_ERR_BODY_LEN = 8,    /* the model runs past the end of the buffer */
  /* ts_slot_image_verify_body */
  TS_IMG_ERR_MODEL_CRC = 9,   /* the body's CRC-32 is not the header's */
  /* ts_slot_image_check: refusals before anything is erased */
  TS_IMG_ERR_PROFILE = 10,    /* target-runtime profile differs from the firmware's */
  TS_IMG_ERR_OP = 11,         /* an operator the firmware's op resolver lacks */
  TS_IMG_ERR_ARENA = 12,      /* arena need above the firmware's tensor arena */
  TS_IMG_ERR_INPUT = 13,      /* input bytes above the firmware's input buffer */
  TS_IMG_ERR_OUTPUT = 14,     /* output bytes above the firmware's output buffer */
  TS_IMG_ERR_SLOT_SIZE = 15,  /* header + model larger than a slot */
  TS_IMG_STATUS_COUNT = 16
} ts_slot_image_status;

/* A parsed header. Scalars are copied; `golden` and `body` point into the parsed buffer. */
typedef struct {
  uint16_t format_version;
  uint16_t header_len;   /* = offset of the body, a multiple of 16 */
  uint32_t sequence;     /* install sequence number */
  uint32_t model_len;    /* body bytes */
  uint32_t model_crc32;  /* CRC-32 IEEE (zlib) of the body */
  uint8_t sha256[TS_SLOT_SHA256_LEN];
  char model_version[TS_SLOT_VERSION_LEN + 1u]; /* NUL-terminated */
  char profile[TS_SLOT_PROFILE_LEN + 1u];    /* NUL-terminated */
  uint32_t arena_bytes;
  uint32_t input_bytes;
  uint32_t output_bytes;
  float input_scale;
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
  /* Regression target units: value = target_mean + target_scale * (dequantized output);
   * identity (0, 1) for other models. Finite; target_scale non-zero. */
  float target_mean;
  float target_scale;
  uint16_t n_ops;
  uint16_t n_golden;
  uint32_t header_crc32;
  uint16_t ops[TS_SLOT_MAX_OPS];  /* TFLite BuiltinOperator numbers, n_ops of them */
  /* n_golden inputs (input_bytes each) then n_golden outputs (output_bytes each) */
  const uint8_t *golden;
  const uint8_t *body;  /* NULL after ts_slot_image_parse_header */
} ts_slot_header_t;

/* What the firmware can run, for ts_slot_image_check. */
typedef struct {
  const char *profile;   /* the firmware's target-runtime profile id */
  const uint16_t *ops;   /* operator ids registered in its op resolver */
  size_t n_ops;
  uint32_t arena_bytes;  /* tensor arena */
  uint32_t input_bytes;  /* input buffer (TS_MAX_INPUT_BYTES) */
  uint32_t output_bytes; /* output buffer */
  uint32_t slot_bytes;   /* bytes a slot holds for header + model (trailer excluded) */
} ts_slot_limits_t;

/* Parse and validate the header at buf[0..len); the model need not be in the buffer
 * (the installer's "begin" has only the header). out->body is NULL. On error *out is
 * zeroed. */
ts_slot_image_status ts_slot_image_parse_header(const uint8_t *buf, size_t len,
                                                ts_slot_header_t *out);

/* As ts_slot_image_parse_header, but buf may end inside the header, after its operator
 * ids (a SLOT_BEGIN of a header longer than one payload): when it does, the header CRC is
 * not checked (out->header_crc32 is the stored value) and out->golden is NULL. With the
 * whole header in buf it is ts_slot_image_parse_header. */
ts_slot_image_status ts_slot_image_parse_prefix(const uint8_t *buf, size_t len,
                                                ts_slot_header_t *out);

/* ts_slot_image_parse_header, then the model must fit in buf: out->body = buf + header_len. */
ts_slot_image_status ts_slot_image_parse(const uint8_t *buf, size_t len,
                                         ts_slot_header_t *out);

/* CRC-32 of h->body (h->model_len bytes) against h->model_crc32. */
ts_slot_image_status ts_slot_image_verify_body(const ts_slot_header_t *h);

/* Compatibility with the firmware, checked in this order: profile, operators, arena,
 * input, output, slot size. The first refusal wins. */
ts_slot_image_status ts_slot_image_check(const ts_slot_header_t *h, const ts_slot_limits_t *fw);

/* A short static message for a status, naming the limit ("unknown status" if out of range). */
const char *ts_slot_image_status_str(ts_slot_image_status s);

#ifdef __cplusplus
}
#endif

#endif /* TS_SLOT_IMAGE_H */
