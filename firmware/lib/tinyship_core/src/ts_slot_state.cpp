// ts_slot_state.cpp - the boot decision over two model slots (see ts_slot_state.h and
// firmware/SLOTS.md). Pure: no flash access, no allocation, no globals written.
#include "ts_slot_state.h"

extern "C" const uint8_t ts_commit_magic[TS_COMMIT_MAGIC_LEN] = {
    0x74, 0x73, 0x53, 0x4c, 0x4f, 0x54, 0xa5, 0x3c};  // "tsSLOT" + 2 bytes with mixed bits

namespace {

bool is_flag(uint8_t v) { return v <= static_cast<uint8_t>(TS_FLAG_BAD); }

bool rest_erased(const uint8_t* p, size_t from, size_t len) {
    for (size_t i = from; i < len; ++i) {
        if (p[i] != 0xFFu) return false;
    }
    return true;
}

bool flags_valid(const ts_slot_flags* s) {
    return is_flag(s->commit) && is_flag(s->tried) && is_flag(s->confirmed) &&
           is_flag(s->revoked) && s->crc_ok <= 1u;
}

// Slot `i` beats slot `j` as the model to boot: newer install first; on a tie (never made
// by the installer) a confirmed slot beats a pending one, then A beats B.
bool better(const ts_slot_flags* s, const ts_slot_class* c, unsigned i, unsigned j) {
    if (s[i].seq != s[j].seq) return s[i].seq > s[j].seq;
    if (c[i] != c[j]) return c[i] == TS_SLOT_CONFIRMED;
    return i < j;
}

}  // namespace

extern "C" {

ts_flag ts_flag_decode(const uint8_t* unit, size_t len) {
    if (unit == nullptr || len == 0) return TS_FLAG_BAD;
    if (rest_erased(unit, 0, len)) return TS_FLAG_UNSET;
    if (unit[0] == TS_FLAG_SET_BYTE && rest_erased(unit, 1, len)) return TS_FLAG_SET;
    return TS_FLAG_BAD;
}

ts_flag ts_commit_decode(const uint8_t* unit, size_t len) {
    if (unit == nullptr || len < TS_COMMIT_MAGIC_LEN) return TS_FLAG_BAD;
    if (rest_erased(unit, 0, len)) return TS_FLAG_UNSET;
    for (size_t i = 0; i < TS_COMMIT_MAGIC_LEN; ++i) {
        if (unit[i] != ts_commit_magic[i]) return TS_FLAG_BAD;
    }
    return rest_erased(unit, TS_COMMIT_MAGIC_LEN, len) ? TS_FLAG_SET : TS_FLAG_BAD;
}

ts_slot_class ts_slot_classify(const ts_slot_flags* s) {
    if (s == nullptr || !flags_valid(s)) return TS_SLOT_INVALID;
    // Behind a missing or torn commit marker nothing (not even the CRC) is trusted.
    if (s->commit != TS_FLAG_SET || s->crc_ok != 1u) return TS_SLOT_INVALID;
    // A torn revoke was still a decision to revert: honour it.
    if (s->revoked != TS_FLAG_UNSET) return TS_SLOT_REVOKED;
    if (s->confirmed == TS_FLAG_SET) return TS_SLOT_CONFIRMED;
    // Tried (even torn: the trial may have started) or a torn confirm (the unit can never
    // be written to SET under the strict NOR rule) -> it can never become confirmed.
    if (s->tried != TS_FLAG_UNSET || s->confirmed == TS_FLAG_BAD) return TS_SLOT_FAILED;
    return TS_SLOT_PENDING;
}

ts_slot_status ts_boot_decide(const ts_slot_flags* a, const ts_slot_flags* b,
                              ts_boot_decision* out) {
    if (out == nullptr) return TS_SLOT_ERR_NULL;
    *out = ts_boot_decision{};
    out->source = TS_BOOT_FACTORY;
    out->mode = TS_BOOT_CONFIRMED;
    if (a == nullptr || b == nullptr) return TS_SLOT_ERR_NULL;
    if (!flags_valid(a) || !flags_valid(b)) return TS_SLOT_ERR_FLAG;

    const ts_slot_flags slots[2] = {*a, *b};
    const ts_slot_class cls[2] = {ts_slot_classify(a), ts_slot_classify(b)};

    // A pending slot older than the other committed slot is stale: the host installed a
    // newer model after it, so it must never run (not even when that newer one is later
    // reverted). Never the case when both pending slots have the same sequence number.
    bool stale[2] = {false, false};
    for (unsigned i = 0; i < 2u; ++i) {
        const unsigned j = i ^ 1u;
        stale[i] = cls[i] == TS_SLOT_PENDING && cls[j] != TS_SLOT_INVALID &&
                   slots[j].seq > slots[i].seq;
    }

    // 1. Revoke failed trials and stale pending slots first, so a reset from here on
    //    cannot run them.
    for (unsigned i = 0; i < 2u; ++i) {
        if (cls[i] == TS_SLOT_FAILED || stale[i]) {
            out->actions[out->n_actions++] =
                ts_slot_action{static_cast<uint8_t>(TS_ACT_REVOKE), static_cast<uint8_t>(i)};
        }
    }

    // 2. Boot the newest bootable slot (confirmed, or pending and not stale), else the
    //    factory model.
    int pick = -1;
    for (unsigned i = 0; i < 2u; ++i) {
        if (cls[i] != TS_SLOT_CONFIRMED && (cls[i] != TS_SLOT_PENDING || stale[i])) continue;
        if (pick < 0 || better(slots, cls, i, static_cast<unsigned>(pick))) {
            pick = static_cast<int>(i);
        }
    }
    if (pick < 0) return TS_SLOT_OK;

    const auto slot = static_cast<uint8_t>(pick);
    out->source = static_cast<uint8_t>(slot == TS_SLOT_A ? TS_BOOT_SLOT_A : TS_BOOT_SLOT_B);
    if (cls[slot] == TS_SLOT_PENDING) {
        // 3. A trial: mark it tried before it runs, so a reset during the trial reverts.
        out->mode = TS_BOOT_TRIAL;
        out->actions[out->n_actions++] =
            ts_slot_action{static_cast<uint8_t>(TS_ACT_MARK_TRIED), slot};
    }
    return TS_SLOT_OK;
}

const char* ts_slot_class_name(ts_slot_class c) {
    switch (c) {
        case TS_SLOT_INVALID: return "invalid";
        case TS_SLOT_REVOKED: return "revoked";
        case TS_SLOT_PENDING: return "pending";
        case TS_SLOT_FAILED: return "failed";
        case TS_SLOT_CONFIRMED: return "confirmed";
    }
    return "?";
}

const char* ts_boot_source_name(ts_boot_source s) {
    switch (s) {
        case TS_BOOT_FACTORY: return "factory";
        case TS_BOOT_SLOT_A: return "slot_a";
        case TS_BOOT_SLOT_B: return "slot_b";
    }
    return "?";
}

const char* ts_boot_mode_name(ts_boot_mode m) {
    switch (m) {
        case TS_BOOT_CONFIRMED: return "confirmed";
        case TS_BOOT_TRIAL: return "trial";
    }
    return "?";
}

}  // extern "C"
