// nor_sim.h - a NOR flash simulator implementing ts_flash_t, for the host tests of the
// core's model slots (test_core_slots.cpp, fuzz_core.cpp).
//
// This is a test double at a true boundary: ts_flash_t is the hardware abstraction the
// core reaches the board's internal flash through (mbed::FlashIAP, esp_partition_* on the
// boards), so on the host the flash itself is what we substitute. Everything above it
// (slot store, boot decision, installer, protocol) is the real core code.
//
// Semantics (firmware/SLOTS.md "Flash semantics"):
//  - erase: one whole sector (offset a multiple of sector_size), every byte 0xFF;
//  - program: offset and length multiples of program_unit, inside the slot, and every
//    target byte still erased (0xFF) - the strict write-once rule. Anything else is a
//    *violation*: counted, the first ones printed, an error returned, nothing changed.
//    A violation is a bug of the core (the caller must never ask for it); the tests
//    fail on violations != 0, so every program/erase through this sim is itself a check.
//  - an operation counter (erase + program calls, 1-based, cumulative);
//  - faults: `fail_op` = N makes operation N return an error without changing anything
//    (a transient failure; later operations work); `cut_at` = N is a power cut before
//    operation N: that operation and every later one fail and the flash is frozen until
//    power_on(). With `torn`, operation N happens partly instead (a program leaves a
//    prefix of whole units then one unit with a random subset of its 0 bits cleared; an
//    erase sets a random subset of the sector's bits), then the power is off.
//  - map(): the memory-mapped view, 16-byte aligned; reads always work (also when off).
//    Each slot is its own heap block of exactly slot_size bytes, so under ASan a read
//    before or past a slot (a length the core did not check) is an error.
#ifndef TINYSHIP_NOR_SIM_H
#define TINYSHIP_NOR_SIM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "ts_flash.h"

struct NorOp {
  char kind;  // 'E' erase, 'P' program
  uint32_t slot;
  uint32_t offset;
  uint32_t len;
  bool ok;  // the operation completed
};

class NorSim {
 public:
  // faults (absolute operation numbers, 1-based; 0 = off)
  uint64_t fail_op = 0;
  uint64_t cut_at = 0;
  bool torn = false;
  uint64_t torn_seed = 0x243F6A8885A308D3ull;
  bool map_null[TS_FLASH_SLOTS] = {false, false};  // map() returns NULL for this slot
  // counters
  uint64_t ops = 0;  // erase + program calls
  uint64_t erases = 0;
  uint64_t programs = 0;
  uint64_t slot_erases[TS_FLASH_SLOTS] = {0, 0};  // erases that changed something, per slot
  uint64_t violations = 0;
  std::string first_violation;
  bool keep_log = true;
  std::vector<NorOp> log;
  bool quiet = false;  // do not print violations (the fuzz target reports them itself)

  NorSim(uint32_t sector_size, uint32_t program_unit, uint32_t slot_size, uint32_t erase_us = 85000,
         uint32_t program_us = 7872) {
    for (uint32_t s = 0; s < TS_FLASH_SLOTS; s++) {
      // aligned_alloc needs a size that is a multiple of the alignment
      const size_t n = (static_cast<size_t>(slot_size) + 15u) / 16u * 16u;
      mem_[s] = static_cast<uint8_t *>(aligned_alloc(16, n == 0 ? 16 : n));
      if (mem_[s] == nullptr) abort();
      memset(mem_[s], 0xFF, n == 0 ? 16 : n);
    }
    flash_.user = this;
    flash_.sector_size = sector_size;
    flash_.program_unit = program_unit;
    flash_.slot_size = slot_size;
    flash_.erase_sector_us = erase_us;
    flash_.program_chunk_us = program_us;
    flash_.erase = &NorSim::erase_cb;
    flash_.program = &NorSim::program_cb;
    flash_.map = &NorSim::map_cb;
  }
  ~NorSim() {
    for (uint8_t *m : mem_) free(m);
  }
  NorSim(const NorSim &) = delete;
  NorSim &operator=(const NorSim &) = delete;

  const ts_flash_t *flash() const { return &flash_; }
  uint32_t sector() const { return flash_.sector_size; }
  uint32_t unit() const { return flash_.program_unit; }
  uint32_t slot_size() const { return flash_.slot_size; }
  uint8_t *slot_mem(uint32_t slot) { return mem_[slot]; }
  const uint8_t *slot_mem(uint32_t slot) const { return mem_[slot]; }
  size_t bytes() const { return static_cast<size_t>(flash_.slot_size) * TS_FLASH_SLOTS; }

  // Whole flash content (slot A then B), to compare before/after a command that must not
  // write.
  std::vector<uint8_t> snapshot() const {
    std::vector<uint8_t> v;
    for (const uint8_t *m : mem_) v.insert(v.end(), m, m + flash_.slot_size);
    return v;
  }
  void erase_all() {
    for (uint8_t *m : mem_) memset(m, 0xFF, flash_.slot_size);
  }

  // Power: cut_at tripped and not yet powered on again.
  bool powered_off() const { return off_; }
  // Power back on: faults cleared (the counter keeps counting).
  void power_on() {
    off_ = false;
    cut_at = 0;
    fail_op = 0;
    torn = false;
  }
  // Arm a power cut / a failure at the n-th operation from now (n >= 1).
  void cut_in(uint64_t n, bool torn_write = false) {
    cut_at = ops + n;
    torn = torn_write;
  }
  void fail_in(uint64_t n) { fail_op = ops + n; }

  // Test tool (not a flash operation): change bits behind the core's back (damage).
  void poke(uint32_t slot, uint32_t offset, uint8_t value) { slot_mem(slot)[offset] = value; }

 private:
  uint8_t *mem_[TS_FLASH_SLOTS] = {};
  ts_flash_t flash_{};
  bool off_ = false;

  uint32_t rnd() {  // xorshift64*, for torn operations
    torn_seed ^= torn_seed >> 12;
    torn_seed ^= torn_seed << 25;
    torn_seed ^= torn_seed >> 27;
    return static_cast<uint32_t>((torn_seed * 2685821657736338717ull) >> 32);
  }

  void violation(const char *what, uint32_t slot, uint32_t offset, uint32_t len) {
    char buf[160];
    snprintf(buf, sizeof buf, "NOR violation: %s (slot %u offset %u len %u, op %llu)", what, slot,
             offset, len, static_cast<unsigned long long>(ops));
    if (violations == 0) first_violation = buf;
    if (!quiet && violations < 20) fprintf(stderr, "%s\n", buf);
    violations++;
  }

  void record(char kind, uint32_t slot, uint32_t offset, uint32_t len, bool ok) {
    if (keep_log) log.push_back(NorOp{kind, slot, offset, len, ok});
  }

  // Counts the operation and applies the fault plan: 0 run it, 1 fail it (nothing
  // changes), 2 tear it (partly happens; the power is then off).
  int begin_op() {
    ops++;
    if (off_) return 1;
    if (cut_at != 0 && ops >= cut_at) {
      off_ = true;
      return torn && ops == cut_at ? 2 : 1;
    }
    if (fail_op != 0 && ops == fail_op) return 1;
    return 0;
  }

  int erase(uint32_t slot, uint32_t offset) {
    erases++;
    const int plan = begin_op();
    if (slot >= TS_FLASH_SLOTS || offset % flash_.sector_size != 0u || offset >= flash_.slot_size) {
      violation("erase outside a sector boundary or the slot", slot, offset, flash_.sector_size);
      record('E', slot, offset, flash_.sector_size, false);
      return -1;
    }
    uint8_t *p = slot_mem(slot) + offset;
    if (plan == 2) {
      for (uint32_t i = 0; i < flash_.sector_size; i++) p[i] = static_cast<uint8_t>(p[i] | rnd());
    } else if (plan == 0) {
      memset(p, 0xFF, flash_.sector_size);
    }
    if (plan != 1) slot_erases[slot]++;
    record('E', slot, offset, flash_.sector_size, plan == 0);
    return plan == 0 ? 0 : -1;
  }

  int program(uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t len) {
    programs++;
    const int plan = begin_op();
    const uint32_t u = flash_.program_unit;
    if (slot >= TS_FLASH_SLOTS || data == nullptr || len == 0u || offset % u != 0u ||
        len % u != 0u || static_cast<uint64_t>(offset) + len > flash_.slot_size) {
      violation("program not whole aligned units inside the slot", slot, offset, len);
      record('P', slot, offset, len, false);
      return -1;
    }
    uint8_t *p = slot_mem(slot) + offset;
    for (uint32_t i = 0; i < len; i++) {
      if (p[i] != 0xFFu) {
        violation("program to bytes that are not erased (write-once)", slot, offset + i, len);
        record('P', slot, offset, len, false);
        return -1;
      }
    }
    if (plan == 2) {
      const uint32_t units = len / u;
      const uint32_t whole = rnd() % units;
      memcpy(p, data, static_cast<size_t>(whole) * u);
      for (uint32_t i = whole * u; i < (whole + 1u) * u; i++) {
        // a random subset of the bits the data clears
        p[i] = static_cast<uint8_t>(p[i] & ~(static_cast<uint8_t>(~data[i]) & rnd()));
      }
    } else if (plan == 0) {
      memcpy(p, data, len);
    }
    record('P', slot, offset, len, plan == 0);
    return plan == 0 ? 0 : -1;
  }

  static int erase_cb(void *user, uint32_t slot, uint32_t offset) {
    return static_cast<NorSim *>(user)->erase(slot, offset);
  }
  static int program_cb(void *user, uint32_t slot, uint32_t offset, const uint8_t *data,
                        uint32_t len) {
    return static_cast<NorSim *>(user)->program(slot, offset, data, len);
  }
  static const uint8_t *map_cb(void *user, uint32_t slot) {
    NorSim *s = static_cast<NorSim *>(user);
    if (slot >= TS_FLASH_SLOTS || s->map_null[slot]) return nullptr;
    return s->slot_mem(slot);
  }
};

#endif  // TINYSHIP_NOR_SIM_H
