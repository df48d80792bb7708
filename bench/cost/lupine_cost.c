/* lupine_cost: a QEMU 7.2 TCG plugin that counts what the guest executes (API version 1).
 * SPDX-License-Identifier: GPL-2.0-or-later (this plugin alone: it builds against QEMU's
 * include/qemu/qemu-plugin.h).
 *
 *   qemu-system-x86_64 ... -icount shift=0,sleep=off -plugin lupine_cost.so,out=FILE
 *
 * Counts executed instructions by where they are (kernel text: the upper half of the address
 * space; program text: the lower half) and privileged events, found in each instruction's
 * bytes at translation time: syscall, sysretq, iretq, swapgs, mov to CR3, wrmsr, verw, lfence.
 * Writes to FILE one JSON line of the counts so far at each execution of the marker
 * instruction (`nopl 0x4e50554c(%rax,%rax,1)`, which lupine-init executes just before it
 * execs the app), and one when QEMU exits. The counts are added per translation block as it
 * starts, so a marker's line includes the rest of its block. With -smp 1 and -icount the
 * counts are deterministic; with more vCPUs the inline adds race (the API's own caveat). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { KERNEL, PROGRAM, SYSCALL, SYSRET, IRET, SWAPGS, CR3, WRMSR, VERW, LFENCE, N };
static const char *names[N] = {"kernel", "program", "syscall", "sysretq", "iretq",
                               "swapgs", "mov_cr3", "wrmsr", "verw", "lfence"};
static uint64_t counts[N];
static FILE *out;
static uint64_t markers;
static const uint8_t MARKER[8] = {0x0f, 0x1f, 0x84, 0x00, 0x4c, 0x55, 0x50, 0x4e};

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
    for (int i = 0; i < N; i++)
        fprintf(out, ", \"%s\": %llu", names[i], (unsigned long long)counts[i]);
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
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t va = qemu_plugin_insn_vaddr(insn);
        if (va >= 0xffff800000000000ull)
            kernel++;
        else
            program++;
        const uint8_t *bytes = qemu_plugin_insn_data(insn);
        size_t size = qemu_plugin_insn_size(insn);
        if (size == sizeof MARKER && !memcmp(bytes, MARKER, size))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, marker, QEMU_PLUGIN_CB_NO_REGS, NULL);
        int e = event(bytes, size);
        if (e >= 0)
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &counts[e], 1);
    }
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
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "out=", 4))
            out = fopen(argv[i] + 4, "w");
    if (!out) {
        fprintf(stderr, "lupine_cost: give out=FILE, a file it can write\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, finished, NULL);
    return 0;
}
