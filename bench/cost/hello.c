/* hello: the app of bench/cost.py's boot rows and of the test suite's boot budget. Its first
 * act is the marker instruction bench/cost/lupine_cost.c counts intervals by, so the rows split
 * at the app's first instruction of its own (after the exec and the C library's start-up). */
#include <unistd.h>

#define MARK() __asm__ volatile(".byte 0x0f, 0x1f, 0x84, 0x00, 0x4c, 0x55, 0x50, 0x4e")

int main(void)
{
    MARK();
    return write(1, "hello, world\n", 13) == 13 ? 0 : 1;
}
