/* Debian's musl-dev ships no crypt(): nginx calls it only for auth_basic password hashes that
 * it does not implement itself ({PLAIN}, {SHA}, {SSHA} and $apr1$ work without it), so those
 * fail cleanly instead of the link failing. */
#include <errno.h>
#include <stddef.h>

char *crypt(const char *key, const char *salt)
{
    (void)key;
    (void)salt;
    errno = ENOSYS;
    return NULL;
}
