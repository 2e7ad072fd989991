// Tests of the boot decision (ts_slot_state): every row of the table in firmware/SLOTS.md,
// then every combination of flag values against the invariants (make slot-test).
#include <cstdio>
#include <cstring>

#include "ts_slot_state.h"
#include "slot_check.h"

namespace {

constexpr uint8_t U = TS_FLAG_UNSET, S = TS_FLAG_SET, B = TS_FLAG_BAD;

ts_slot_flags slot(uint8_t commit, uint8_t crc, uint8_t tried, uint8_t confirmed,
                   uint8_t revoked, uint32_t seq) {
  ts_slot_flags f{};
  f.commit = commit;
  f.crc_ok = crc;
  f.tried = tried;
  f.confirmed = confirmed;
  f.revoked = revoked;
  f.seq = seq;
  return f;
}

// Representative slots of each class.
ts_slot_flags empty() { return slot(U, 0, U, U, U, 0); }
ts_slot_flags pending(uint32_t seq) { return slot(S, 1, U, U, U, seq); }
ts_slot_flags failed(uint32_t seq) { return slot(S, 1, S, U, U, seq); }
ts_slot_flags confirmed(uint32_t seq) { return slot(S, 1, S, S, U, seq); }
ts_slot_flags revoked(uint32_t seq) { return slot(S, 1, S, U, S, seq); }

ts_boot_decision decide(const ts_slot_flags& a, const ts_slot_flags& b) {
  ts_boot_decision d{};
  CHECK(ts_boot_decide(&a, &b, &d) == TS_SLOT_OK);
  return d;
}

bool has_action(const ts_boot_decision& d, uint8_t kind, uint8_t s) {
  for (unsigned i = 0; i < d.n_actions; ++i)
    if (d.actions[i].kind == kind && d.actions[i].slot == s) return true;
  return false;
}

// Perform the decision's flag writes, each ending as `result` (SET, or BAD when torn).
void apply(const ts_boot_decision& d, ts_slot_flags* s, uint8_t result) {
  for (unsigned i = 0; i < d.n_actions; ++i) {
    ts_slot_flags& t = s[d.actions[i].slot];
    uint8_t& unit = d.actions[i].kind == TS_ACT_MARK_TRIED ? t.tried : t.revoked;
    if (unit == TS_FLAG_UNSET) unit = result;  // write-once: only an erased unit changes
  }
}

// ---------------------------------------------------------------- decoders --
void test_flag_decode() {
  uint8_t u[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  CHECK(ts_flag_decode(u, 4) == TS_FLAG_UNSET);
  u[0] = 0x01;
  CHECK(ts_flag_decode(u, 4) == TS_FLAG_SET);
  CHECK(ts_flag_decode(u, 1) == TS_FLAG_SET);
  u[3] = 0xFE;  // a stray cleared bit in the padding: torn or corrupt
  CHECK(ts_flag_decode(u, 4) == TS_FLAG_BAD);
  CHECK(ts_flag_decode(nullptr, 4) == TS_FLAG_BAD);
  CHECK(ts_flag_decode(u, 0) == TS_FLAG_BAD);
  // Every value of a one-byte unit: exactly one UNSET and one SET.
  int unset = 0, set = 0;
  for (unsigned v = 0; v < 256; ++v) {
    const auto b = static_cast<uint8_t>(v);
    const ts_flag f = ts_flag_decode(&b, 1);
    unset += f == TS_FLAG_UNSET;
    set += f == TS_FLAG_SET;
  }
  CHECK(unset == 1 && set == 1);
}

void test_commit_decode() {
  uint8_t u[16];
  std::memset(u, 0xFF, sizeof u);
  CHECK(ts_commit_decode(u, sizeof u) == TS_FLAG_UNSET);
  std::memcpy(u, ts_commit_magic, TS_COMMIT_MAGIC_LEN);
  CHECK(ts_commit_decode(u, sizeof u) == TS_FLAG_SET);
  CHECK(ts_commit_decode(u, TS_COMMIT_MAGIC_LEN) == TS_FLAG_SET);
  CHECK(ts_commit_decode(u, TS_COMMIT_MAGIC_LEN - 1) == TS_FLAG_BAD);
  // A torn magic (any single byte still partly erased) is never SET.
  for (unsigned i = 0; i < TS_COMMIT_MAGIC_LEN; ++i) {
    uint8_t t[TS_COMMIT_MAGIC_LEN];
    std::memcpy(t, ts_commit_magic, sizeof t);
    CHECK(t[i] != 0xFFu);
    t[i] = static_cast<uint8_t>(t[i] | (t[i] + 1u));  // one cleared bit left erased (1)
    CHECK(ts_commit_decode(t, sizeof t) == TS_FLAG_BAD);
  }
  u[12] = 0x00;
  CHECK(ts_commit_decode(u, sizeof u) == TS_FLAG_BAD);
}

// ------------------------------------------------------- per-slot table rows --
void test_classify_rows() {
  CHECK(ts_slot_classify(nullptr) == TS_SLOT_INVALID);
  // Row 1: no or torn commit marker -> invalid, whatever else the trailer says.
  const ts_slot_flags r1a = slot(U, 1, U, S, U, 9);
  CHECK(ts_slot_classify(&r1a) == TS_SLOT_INVALID);
  const ts_slot_flags r1b = slot(B, 1, U, S, U, 9);
  CHECK(ts_slot_classify(&r1b) == TS_SLOT_INVALID);
  // Row 2: CRC fails -> invalid, even confirmed.
  const ts_slot_flags r2 = slot(S, 0, S, S, U, 9);
  CHECK(ts_slot_classify(&r2) == TS_SLOT_INVALID);
  // Row 3: revoked (set or torn) -> revoked, even confirmed.
  const ts_slot_flags r3a = slot(S, 1, S, S, S, 9), r3b = slot(S, 1, U, U, B, 9);
  CHECK(ts_slot_classify(&r3a) == TS_SLOT_REVOKED);
  CHECK(ts_slot_classify(&r3b) == TS_SLOT_REVOKED);
  // Row 4: confirmed -> confirmed (tried or not).
  const ts_slot_flags r4a = slot(S, 1, S, S, U, 9), r4b = slot(S, 1, U, S, U, 9),
                      r4c = slot(S, 1, B, S, U, 9);
  CHECK(ts_slot_classify(&r4a) == TS_SLOT_CONFIRMED);
  CHECK(ts_slot_classify(&r4b) == TS_SLOT_CONFIRMED);
  CHECK(ts_slot_classify(&r4c) == TS_SLOT_CONFIRMED);
  // Row 5: torn confirm -> failed (the unit can never become SET).
  const ts_slot_flags r5 = slot(S, 1, S, B, U, 9), r5b = slot(S, 1, U, B, U, 9);
  CHECK(ts_slot_classify(&r5) == TS_SLOT_FAILED);
  CHECK(ts_slot_classify(&r5b) == TS_SLOT_FAILED);
  // Row 6: tried (set or torn), not confirmed -> failed.
  const ts_slot_flags r6a = slot(S, 1, S, U, U, 9), r6b = slot(S, 1, B, U, U, 9);
  CHECK(ts_slot_classify(&r6a) == TS_SLOT_FAILED);
  CHECK(ts_slot_classify(&r6b) == TS_SLOT_FAILED);
  // Row 7: committed, CRC ok, nothing else -> pending.
  const ts_slot_flags r7 = slot(S, 1, U, U, U, 9);
  CHECK(ts_slot_classify(&r7) == TS_SLOT_PENDING);
  // Out-of-range inputs are invalid, not guessed.
  const ts_slot_flags bad1 = slot(3, 1, U, U, U, 9), bad2 = slot(S, 2, U, U, U, 9);
  CHECK(ts_slot_classify(&bad1) == TS_SLOT_INVALID);
  CHECK(ts_slot_classify(&bad2) == TS_SLOT_INVALID);
}

// --------------------------------------------------------- pair table rows --
struct Row {
  const char* name;
  ts_slot_flags a, b;
  uint8_t source, mode;
  uint8_t n_actions;
  ts_slot_action actions[TS_BOOT_MAX_ACTIONS];
};

constexpr uint8_t MT = TS_ACT_MARK_TRIED, RV = TS_ACT_REVOKE, SA = TS_SLOT_A, SB = TS_SLOT_B;
constexpr uint8_t F = TS_BOOT_FACTORY, A = TS_BOOT_SLOT_A, BB = TS_BOOT_SLOT_B;
constexpr uint8_t C = TS_BOOT_CONFIRMED, T = TS_BOOT_TRIAL;

void check_row(const Row& r, bool mirrored) {
  ts_slot_flags a = r.a, b = r.b;
  uint8_t source = r.source;
  ts_slot_action acts[TS_BOOT_MAX_ACTIONS] = {r.actions[0], r.actions[1]};
  if (mirrored) {
    a = r.b;
    b = r.a;
    source = source == A ? BB : source == BB ? A : F;
    for (auto& x : acts) x.slot = static_cast<uint8_t>(x.slot ^ 1u);
    // Revokes are emitted A first: re-sort after mirroring.
    if (r.n_actions == 2 && acts[0].kind == RV && acts[1].kind == RV) {
      const ts_slot_action t = acts[0];
      acts[0] = acts[1];
      acts[1] = t;
    }
  }
  const ts_boot_decision d = decide(a, b);
  bool ok = d.source == source && d.mode == r.mode && d.n_actions == r.n_actions;
  for (unsigned i = 0; ok && i < r.n_actions; ++i)
    ok = d.actions[i].kind == acts[i].kind && d.actions[i].slot == acts[i].slot;
  if (!ok) std::printf("row '%s'%s: got source=%u mode=%u n=%u\n", r.name,
                       mirrored ? " (mirrored)" : "", d.source, d.mode, d.n_actions);
  CHECK(ok);
}

void test_table_rows() {
  const ts_slot_flags none = empty(), bad_crc = slot(S, 0, U, U, U, 7), rv = revoked(7);
  const Row rows[] = {
      {"1 nothing bootable", none, none, F, C, 0, {}},
      {"1 bad crc + revoked", bad_crc, rv, F, C, 0, {}},
      {"2 confirmed only", confirmed(3), none, A, C, 0, {}},
      {"3 pending only -> trial", pending(3), none, A, T, 1, {{MT, SA}}},
      {"4 two confirmed -> newer", confirmed(3), confirmed(4), BB, C, 0, {}},
      {"5 confirmed + newer pending -> trial", confirmed(3), pending(4), BB, T, 1, {{MT, SB}}},
      {"6 confirmed + older pending -> revoke stale, confirmed", confirmed(4), pending(3), A,
       C, 1, {{RV, SB}}},
      {"7 two pending -> revoke older, newer trial", pending(3), pending(4), BB, T, 2,
       {{RV, SA}, {MT, SB}}},
      {"8 failed only -> revoke, factory", failed(3), none, F, C, 1, {{RV, SA}}},
      {"9 failed + confirmed -> revoke, confirmed", failed(4), confirmed(3), BB, C, 1,
       {{RV, SA}}},
      {"10 failed + older pending -> revoke both, factory", failed(4), pending(3), F, C, 2,
       {{RV, SA}, {RV, SB}}},
      {"10b failed + newer pending -> revoke, trial", failed(3), pending(4), BB, T, 2,
       {{RV, SA}, {MT, SB}}},
      {"10c revoked newer + pending -> revoke stale, factory", revoked(4), pending(3), F, C,
       1, {{RV, SB}}},
      {"11 two failed -> revoke both, factory", failed(3), failed(4), F, C, 2,
       {{RV, SA}, {RV, SB}}},
      {"12 invalid newer + confirmed", slot(S, 0, U, U, U, 9), confirmed(3), BB, C, 0, {}},
      {"13 revoked newer + confirmed", revoked(9), confirmed(3), BB, C, 0, {}},
  };
  for (const Row& r : rows) {
    check_row(r, false);
    check_row(r, true);
  }
  // Ties (the installer never makes them): confirmed beats pending, then A beats B.
  CHECK(decide(pending(5), confirmed(5)).source == BB);
  CHECK(decide(confirmed(5), confirmed(5)).source == A);
  CHECK(decide(pending(5), pending(5)).source == A);
}

void test_errors() {
  ts_boot_decision d{};
  const ts_slot_flags p = pending(1), bad = slot(S, 1, 7, U, U, 1);
  d.n_actions = 9;
  CHECK(ts_boot_decide(nullptr, &p, &d) == TS_SLOT_ERR_NULL);
  CHECK(d.source == F && d.n_actions == 0);
  CHECK(ts_boot_decide(&p, nullptr, &d) == TS_SLOT_ERR_NULL);
  CHECK(ts_boot_decide(&p, &p, nullptr) == TS_SLOT_ERR_NULL);
  d.source = A;
  CHECK(ts_boot_decide(&bad, &p, &d) == TS_SLOT_ERR_FLAG);
  CHECK(d.source == F && d.n_actions == 0);
}

void test_names() {
  CHECK(std::strcmp(ts_slot_class_name(TS_SLOT_PENDING), "pending") == 0);
  CHECK(std::strcmp(ts_slot_class_name(TS_SLOT_FAILED), "failed") == 0);
  CHECK(std::strcmp(ts_boot_source_name(TS_BOOT_SLOT_B), "slot_b") == 0);
  CHECK(std::strcmp(ts_boot_mode_name(TS_BOOT_TRIAL), "trial") == 0);
}

// ------------------------------------------------ exhaustive invariants --
// A pending slot older than the other committed (not invalid) slot: superseded, never run.
bool stale(const ts_slot_flags s[2], const ts_slot_class cls[2], unsigned i) {
  const unsigned j = i ^ 1u;
  return cls[i] == TS_SLOT_PENDING && cls[j] != TS_SLOT_INVALID && s[j].seq > s[i].seq;
}
bool bootable(const ts_slot_flags s[2], const ts_slot_class cls[2], unsigned i) {
  return cls[i] == TS_SLOT_CONFIRMED || (cls[i] == TS_SLOT_PENDING && !stale(s, cls, i));
}

// Boot repeatedly without ever confirming; each trial slot may run at most once, and the
// decision must settle (no more writes) within three boots.
void check_no_second_trial(ts_slot_flags s0, ts_slot_flags s1, uint8_t write_result) {
  ts_slot_flags s[2] = {s0, s1};
  bool trialled[2] = {false, false};
  for (int boot = 0; boot < 4; ++boot) {
    const ts_boot_decision d = decide(s[0], s[1]);
    if (d.n_actions == 0) {
      CHECK(d.mode == C);
      return;
    }
    CHECK(boot < 3);
    if (d.mode == T) {
      const unsigned x = d.source == A ? 0u : 1u;
      CHECK(!trialled[x]);  // never an unconfirmed slot twice
      trialled[x] = true;
    }
    apply(d, s, write_result);
  }
}

void test_exhaustive() {
  const uint8_t fv[3] = {U, S, B};
  const uint32_t seqs[3][2] = {{1, 2}, {2, 1}, {2, 2}};
  long combos = 0;
  for (uint8_t ca : fv) for (uint8_t ka = 0; ka < 2; ++ka) for (uint8_t ta : fv)
  for (uint8_t oka : fv) for (uint8_t ra : fv)
  for (uint8_t cb : fv) for (uint8_t kb = 0; kb < 2; ++kb) for (uint8_t tb : fv)
  for (uint8_t okb : fv) for (uint8_t rb : fv)
  for (const auto& sq : seqs) {
    ++combos;
    const ts_slot_flags s[2] = {slot(ca, ka, ta, oka, ra, sq[0]),
                                slot(cb, kb, tb, okb, rb, sq[1])};
    const ts_slot_class cls[2] = {ts_slot_classify(&s[0]), ts_slot_classify(&s[1])};
    const ts_boot_decision d = decide(s[0], s[1]);
    CHECK(d.n_actions <= TS_BOOT_MAX_ACTIONS);
    if (d.source == F) {
      // Factory only when no slot can boot.
      CHECK(!bootable(s, cls, 0) && !bootable(s, cls, 1));
      CHECK(d.mode == C);
    } else {
      const unsigned x = d.source == A ? 0u : 1u;
      // Never boot a slot whose CRC fails or that lacks the commit marker.
      CHECK(s[x].commit == S && s[x].crc_ok == 1);
      CHECK(s[x].revoked == U);
      CHECK(bootable(s, cls, x));
      CHECK((d.mode == T) == (cls[x] == TS_SLOT_PENDING));
      // A trial marks the slot tried (last write, after any revoke) before it runs.
      if (d.mode == T) {
        CHECK(d.n_actions >= 1 && d.actions[d.n_actions - 1].kind == MT &&
              d.actions[d.n_actions - 1].slot == x);
      }
      // The newest bootable slot wins.
      const unsigned y = x ^ 1u;
      if (bootable(s, cls, y)) CHECK(s[x].seq >= s[y].seq);
      // A confirmed slot is never passed over for the factory or an older slot.
    }
    for (unsigned i = 0; i < 2; ++i) {
      // Revoke exactly the failed and the stale pending slots; never a confirmed slot.
      CHECK(has_action(d, RV, static_cast<uint8_t>(i)) ==
            (cls[i] == TS_SLOT_FAILED || stale(s, cls, i)));
      if (cls[i] == TS_SLOT_CONFIRMED) CHECK(!has_action(d, RV, static_cast<uint8_t>(i)));
      if (has_action(d, MT, static_cast<uint8_t>(i))) CHECK(bootable(s, cls, i));
      // Never an older pending model when a newer one was committed after it.
      if (stale(s, cls, i)) CHECK(d.source != (i == 0 ? A : BB));
    }
    if (cls[0] == TS_SLOT_CONFIRMED || cls[1] == TS_SLOT_CONFIRMED) CHECK(d.source != F);
    // Mirror symmetry when the sequence numbers differ.
    if (sq[0] != sq[1]) {
      const ts_boot_decision m = decide(s[1], s[0]);
      CHECK(m.mode == d.mode && m.n_actions == d.n_actions);
      CHECK(m.source == (d.source == A ? BB : d.source == BB ? A : F));
    }
    // Every write completing, or every write torn: no slot runs twice unconfirmed.
    check_no_second_trial(s[0], s[1], S);
    check_no_second_trial(s[0], s[1], B);
    // A confirmed boot is stable: after its writes, the same model boots again.
    if (d.source != F && d.mode == C) {
      ts_slot_flags after[2] = {s[0], s[1]};
      apply(d, after, S);
      const ts_boot_decision again = decide(after[0], after[1]);
      CHECK(again.source == d.source && again.mode == C && again.n_actions == 0);
    }
  }
  CHECK(combos == 162L * 162L * 3L);
}

}  // namespace

int main() {
  test_flag_decode();
  test_commit_decode();
  test_classify_rows();
  test_table_rows();
  test_errors();
  test_names();
  test_exhaustive();
  std::printf("test_slot_state: %d checks, %d failures\n", slot_check::checks, slot_check::failures);
  return slot_check::failures == 0 ? 0 : 1;
}
