/* ts_slot_state.h - which model to boot: factory, slot A or slot B (draft for issue 11).
 *
 * One pure function of the two slots' trailers, in the style of MCUboot's
 * boot_swap_type_multi(): no flash access, no allocation, no globals. The caller reads
 * each slot's trailer, checks the body CRC, calls ts_boot_decide(), performs the returned
 * flag writes IN ORDER, and only then runs the chosen model. firmware/SLOTS.md has the
 * trailer layout, the write order and the decision table this implements.
 */
#ifndef TS_SLOT_STATE_H
#define TS_SLOT_STATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A write-once trailer unit as read from NOR flash (erased = 0xFF). */
typedef enum {
    TS_FLAG_UNSET = 0, /* every byte 0xFF: never written */
    TS_FLAG_SET = 1,   /* exactly the "set" pattern */
    TS_FLAG_BAD = 2    /* anything else: a torn write (or corruption) */
} ts_flag;

/* What the boot code knows about one slot. `crc_ok` and `seq` are only meaningful when
 * `commit` is TS_FLAG_SET (the header is trusted only behind the commit marker). */
typedef struct {
    uint8_t commit;    /* ts_flag: the commit marker (magic), written last by the installer */
    uint8_t crc_ok;    /* 1 when the body's CRC-32 matches the header's, else 0 */
    uint8_t tried;     /* ts_flag: written by the boot code before the first (trial) run */
    uint8_t confirmed; /* ts_flag: written by "confirm" (host or health check) */
    uint8_t revoked;   /* ts_flag: written by the boot code to revert a failed trial */
    uint32_t seq;      /* install sequence number from the header: newer = larger */
} ts_slot_flags;

/* A slot's state, derived from its flags alone (rows of the per-slot table). */
typedef enum {
    TS_SLOT_INVALID = 0,   /* no commit marker, or CRC fails: never booted */
    TS_SLOT_REVOKED = 1,   /* reverted: never booted again; the installer erases it */
    TS_SLOT_PENDING = 2,   /* committed, not tried: may run once as a trial */
    TS_SLOT_FAILED = 3,    /* tried, not confirmed: a trial was reset/failed -> revoke */
    TS_SLOT_CONFIRMED = 4  /* confirmed: bootable for good */
} ts_slot_class;

typedef enum { TS_BOOT_FACTORY = 0, TS_BOOT_SLOT_A = 1, TS_BOOT_SLOT_B = 2 } ts_boot_source;
typedef enum { TS_BOOT_CONFIRMED = 0, TS_BOOT_TRIAL = 1 } ts_boot_mode;

typedef enum {
    TS_ACT_MARK_TRIED = 1, /* program the slot's `tried` unit */
    TS_ACT_REVOKE = 2      /* program the slot's `revoked` unit */
} ts_action_kind;

#define TS_SLOT_A 0u
#define TS_SLOT_B 1u
#define TS_BOOT_MAX_ACTIONS 2u

typedef struct {
    uint8_t kind; /* ts_action_kind */
    uint8_t slot; /* TS_SLOT_A or TS_SLOT_B */
} ts_slot_action;

typedef struct {
    uint8_t source;    /* ts_boot_source */
    uint8_t mode;      /* ts_boot_mode (TS_BOOT_CONFIRMED for the factory model) */
    uint8_t n_actions; /* flag writes to perform, in order, before running the model */
    ts_slot_action actions[TS_BOOT_MAX_ACTIONS];
} ts_boot_decision;

typedef enum {
    TS_SLOT_OK = 0,
    TS_SLOT_ERR_NULL = 1,  /* a pointer argument is NULL */
    TS_SLOT_ERR_FLAG = 2   /* a flag is not a ts_flag, or crc_ok is not 0/1 */
} ts_slot_status;

/* Flag bytes of a write-once unit of `len` bytes: SET = 0x01 then 0xFF padding. */
#define TS_FLAG_SET_BYTE 0x01u
/* The commit marker: TS_COMMIT_MAGIC_LEN bytes, padded with 0xFF to the program unit. */
#define TS_COMMIT_MAGIC_LEN 8u
extern const uint8_t ts_commit_magic[TS_COMMIT_MAGIC_LEN];

/* Decode a flag unit: all 0xFF -> UNSET; 0x01 then 0xFF -> SET; else BAD (also len 0). */
ts_flag ts_flag_decode(const uint8_t* unit, size_t len);
/* Decode a commit unit: all 0xFF -> UNSET; magic then 0xFF -> SET; else BAD. */
ts_flag ts_commit_decode(const uint8_t* unit, size_t len);

/* The slot's class (TS_SLOT_INVALID for a NULL pointer or out-of-range flags). */
ts_slot_class ts_slot_classify(const ts_slot_flags* slot);

/* The boot decision for slots A and B. On error, *out is the factory model, no actions. */
ts_slot_status ts_boot_decide(const ts_slot_flags* a, const ts_slot_flags* b,
                              ts_boot_decision* out);

/* Stable names for logs and INFO ("pending", "slot_a", "trial", ...). */
const char* ts_slot_class_name(ts_slot_class c);
const char* ts_boot_source_name(ts_boot_source s);
const char* ts_boot_mode_name(ts_boot_mode m);

#ifdef __cplusplus
}
#endif

#endif /* TS_SLOT_STATE_H */
