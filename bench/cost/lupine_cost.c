/* lupine_cost: a QEMU 7.2 TCG plugin that counts what the guest executes (API version 1).
 * SPDX-License-Identifier: GPL-2.0-or-later (this plugin alone: it builds against QEMU's
 * include/qemu/qemu-plugin.h).
 *
 *   qemu-system-x86_64 ... -icount shift=0,sleep=off -plugin lupine_cost.so,out=FILE[,syms=SYMS]
 *
 * Counts executed instructions by where they are (kernel text: the upper half of the address
 * space; program text: the lower half) and privileged events, found in each instruction's
 * bytes at translation time: syscall, sysretq, iretq, swapgs, mov to CR3, wrmsr, verw, lfence.
 * Writes to FILE one JSON line of the counts so far at each execution of the marker
 * instruction (`nopl 0x4e50554c(%rax,%rax,1)`, which lupine-init executes just before it
 * execs the app), and one when QEMU exits.
 *
 * With syms=SYMS (lines "START END NAME", hex, sorted, not overlapping: the kernel's code
 * symbols from vmlinux), each line also has the instructions executed in each symbol
 * ("symbols", those not zero) and the interrupts and exceptions delivered: executions of the
 * first instruction of the kernel's asm_* entry stubs (asm_exc_* are exceptions, asm_sysvec_*,
 * asm_common_interrupt and asm_spurious_interrupt interrupts; "entries" has each stub's).
 *
 * The counts are added per translation block, or per run of a block's instructions in one
 * symbol, as it starts, so a marker's line includes the rest of its block. With -smp 1 and -icount the
 * counts are deterministic; with more vCPUs the inline adds race (the API's own caveat). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { KERNEL, PROGRAM, SYSCALL, SYSRET, IRET, SWAPGS, CR3, WRMSR, VERW, LFENCE, INTERRUPTS,
       EXCEPTIONS, N };
static const char *names[N] = {"kernel", "program", "syscall", "sysretq", "iretq", "swapgs",
                               "mov_cr3", "wrmsr", "verw", "lfence", "interrupts",
                               "exceptions"};
static uint64_t counts[N];
static FILE *out;
static uint64_t markers;
static const uint8_t MARKER[8] = {0x0f, 0x1f, 0x84, 0x00, 0x4c, 0x55, 0x50, 0x4e};

/* The symbols of syms=: instructions executed in each, and entries of the asm_* stubs. */
struct symbol {
    uint64_t start, end, insns, entries;
    int kind; /* INTERRUPTS, EXCEPTIONS or -1 */
    char *name;
};
static struct symbol *syms;
static size_t nsyms;

static int read_syms(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    unsigned long long start, end;
    char name[256];
    size_t cap = 0;
    while (fscanf(f, "%llx %llx %255s", &start, &end, name) == 3) {
        if (nsyms == cap && !(syms = realloc(syms, (cap = cap * 2 + 1024) * sizeof *syms)))
            return -1;
        int kind = !strncmp(name, "asm_exc_", 8) ? EXCEPTIONS
                   : (!strncmp(name, "asm_sysvec_", 11) || !strcmp(name, "asm_common_interrupt") ||
                      !strcmp(name, "asm_spurious_interrupt"))
                       ? INTERRUPTS
                       : -1;
        syms[nsyms++] = (struct symbol){start, end, 0, 0, kind, strdup(name)};
    }
    fclose(f);
    return nsyms ? 0 : -1;
}

/* The symbol that holds `va`, or NULL. */
static struct symbol *symbol_at(uint64_t va)
{
    size_t lo = 0, hi = nsyms;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (va < syms[mid].start)
            hi = mid;
        else if (va >= syms[mid].end)
            lo = mid + 1;
        else
            return &syms[mid];
    }
    return NULL;
}

/* The event an instruction is, from its bytes, or -1. */
static int event(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && (b[i] == 0x66 || b[i] == 0xf2 || b[i] == 0xf3 || (b[i] & 0xf0) == 0x40))
        i++; /* legacy prefixes and REX */
    if (i + 1 >= n || b[i] != 0x0f)
        return (i < n && b[i] == 0xcf && i > 0 && (b[i - 1] & 0xf8) == 0x48) ? IRET : -1;
    uint8_t op = b[i + 1], modrm = i + 2 < n ? b[i + 2] : 0;
    switch (op) {
    case 0x05: return SYSCALL;
    case 0x07: return SYSRET;
    case 0x30: return WRMSR;
    case 0x01: return modrm == 0xf8 ? SWAPGS : -1;
    case 0x22: return ((modrm >> 3) & 7) == 3 ? CR3 : -1;
    case 0x00: return ((modrm >> 3) & 7) == 5 ? VERW : -1;
    case 0xae: return modrm == 0xe8 ? LFENCE : -1;
    }
    return -1;
}

/* One JSON line of the counts so far, tagged `what`. */
static void line(const char *what)
{
    fprintf(out, "{\"at\": \"%s\"", what);
    counts[INTERRUPTS] = counts[EXCEPTIONS] = 0;
    for (size_t i = 0; i < nsyms; i++)
        if (syms[i].kind >= 0)
            counts[syms[i].kind] += syms[i].entries;
    for (int i = 0; i < N; i++)
        if (nsyms || (i != INTERRUPTS && i != EXCEPTIONS))
            fprintf(out, ", \"%s\": %llu", names[i], (unsigned long long)counts[i]);
    if (nsyms) {
        const char *sep = "";
        fputs(", \"entries\": {", out);
        for (size_t i = 0; i < nsyms; i++)
            if (syms[i].kind >= 0 && syms[i].entries) {
                fprintf(out, "%s\"%s\": %llu", sep, syms[i].name,
                        (unsigned long long)syms[i].entries);
                sep = ", ";
            }
        sep = "";
        fputs("}, \"symbols\": {", out);
        for (size_t i = 0; i < nsyms; i++)
            if (syms[i].insns) {
                fprintf(out, "%s\"%s\": %llu", sep, syms[i].name,
                        (unsigned long long)syms[i].insns);
                sep = ", ";
            }
        fputs("}", out);
    }
    fputs("}\n", out);
    fflush(out);
}

static void marker(unsigned int vcpu, void *p)
{
    char what[32];
    snprintf(what, sizeof what, "marker %llu", (unsigned long long)++markers);
    line(what);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t kernel = 0, program = 0;
    struct symbol *run = NULL; /* the symbol of the run of instructions being counted */
    struct qemu_plugin_insn *run_start = NULL;
    uint64_t run_len = 0;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t va = qemu_plugin_insn_vaddr(insn);
        if (va >= 0xffff800000000000ull)
            kernel++;
        else
            program++;
        struct symbol *sym = nsyms ? symbol_at(va) : NULL;
        if (sym != run) {
            if (run)
                qemu_plugin_register_vcpu_insn_exec_inline(run_start, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &run->insns, run_len);
            run = sym, run_start = insn, run_len = 0;
        }
        run_len++;
        if (sym && sym->kind >= 0 && va == sym->start)
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &sym->entries, 1);
        const uint8_t *bytes = qemu_plugin_insn_data(insn);
        size_t size = qemu_plugin_insn_size(insn);
        if (size == sizeof MARKER && !memcmp(bytes, MARKER, size))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, marker, QEMU_PLUGIN_CB_NO_REGS, NULL);
        int e = event(bytes, size);
        if (e >= 0)
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &counts[e], 1);
    }
    if (run)
        qemu_plugin_register_vcpu_insn_exec_inline(run_start, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &run->insns, run_len);
    if (kernel)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                 &counts[KERNEL], kernel);
    if (program)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                 &counts[PROGRAM], program);
}

static void finished(qemu_plugin_id_t id, void *p)
{
    line("exit");
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4))
            out = fopen(argv[i] + 4, "w");
        if (!strncmp(argv[i], "syms=", 5) && read_syms(argv[i] + 5)) {
            fprintf(stderr, "lupine_cost: %s: not a readable list of symbols\n", argv[i] + 5);
            return -1;
        }
    }
    if (!out) {
        fprintf(stderr, "lupine_cost: give out=FILE, a file it can write\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, finished, NULL);
    return 0;
}
