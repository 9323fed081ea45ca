/*
 * softskf: a software SKF device (GM/T 0016-2012) for cert-agent's tests and demo, as SoftHSM2 is
 * for PKCS#11. It behaves like a strict device: sizes asked with a NULL buffer, SAR_BUFFER_TOO_SMALL,
 * bad and closed handles refused, no signature before the user PIN, wrong PINs counted down to the
 * lock (then the right PIN is refused too), the default-PIN flag, removal while connected.
 *
 * State lives in the directory named by $SOFTSKF_DIR, one folder per device:
 *
 *   DEVICE/device.conf            label=, serial=, manufacturer=, issuer=   (the device is
 *                                 inserted while its folder exists, removed when it goes)
 *   DEVICE/misbehave              optional: one word a test sets to make this device return
 *                                 garbage (oversize-length, short-cert, zero-signature, bad-name-list)
 *   DEVICE/APP/pin.conf           user=<sha256 hex of the PIN>, max=, remain=, default=0|1
 *   DEVICE/APP/CONTAINER/type     1 (RSA) or 2 (SM2)
 *   DEVICE/APP/CONTAINER/sign.key PEM private key; sign.der the signing certificate (DER)
 *
 * PIN counters are read and written under an flock of APP/pin.lock and replaced atomically
 * (write, then rename), so processes sharing a device see one count. $SOFTSKF_BOOL_BYTES (4 or 8,
 * default 8 as in GmSSL's header on LP64) is how wide this device writes a BOOL, as vendors differ.
 *
 * Cryptography is the system's OpenSSL 3: SM3, SM2 signatures on a digest, RSA PKCS#1 v1.5.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

typedef uint32_t ULONG;
typedef uint8_t BYTE;
typedef void *HANDLE;

#define EXPORT __attribute__((visibility("default")))

#define SAR_OK 0x00000000u
#define SAR_FAIL 0x0A000001u
#define SAR_NOTSUPPORTYETERR 0x0A000003u
#define SAR_FILEERR 0x0A000004u
#define SAR_INVALIDHANDLEERR 0x0A000005u
#define SAR_INVALIDPARAMERR 0x0A000006u
#define SAR_KEYNOTFOUNTERR 0x0A00001Bu
#define SAR_CERTNOTFOUNTERR 0x0A00001Cu
#define SAR_BUFFER_TOO_SMALL 0x0A000020u
#define SAR_DEVICE_REMOVED 0x0A000023u
#define SAR_PIN_INCORRECT 0x0A000024u
#define SAR_PIN_LOCKED 0x0A000025u
#define SAR_PIN_LEN_RANGE 0x0A000027u
#define SAR_USER_TYPE_INVALID 0x0A00002Au
#define SAR_APPLICATION_NOT_EXISTS 0x0A00002Eu
#define SAR_USER_NOT_LOGGED_IN 0x0A00002Du

#define USER_TYPE 1u
#define SGD_SM3 0x00000001u
#define SGD_SHA256 0x00000004u
#define MIN_PIN 6
#define MAX_PIN 16

#pragma pack(push, 1)
typedef struct {
    BYTE major;
    BYTE minor;
} VERSION;

typedef struct {
    VERSION Version;
    char Manufacturer[64];
    char Issuer[64];
    char Label[32];
    char SerialNumber[32];
    VERSION HWVersion;
    VERSION FirmwareVersion;
    ULONG AlgSymCap;
    ULONG AlgAsymCap;
    ULONG AlgHashCap;
    ULONG DevAuthAlgId;
    ULONG TotalSpace;
    ULONG FreeSpace;
    ULONG MaxECCBufferSize;
    ULONG MaxBufferSize;
    BYTE Reserved[64];
} DEVINFO;

typedef struct {
    ULONG BitLen;
    BYTE XCoordinate[64];
    BYTE YCoordinate[64];
} ECCPUBLICKEYBLOB;

typedef struct {
    BYTE r[64];
    BYTE s[64];
} ECCSIGNATUREBLOB;
#pragma pack(pop)

/* --- handles: every handle the library gave out and has not closed ---------------------------- */

enum kind { DEV = 0x44455631, APP = 0x41505031, CON = 0x434f4e31, HASH = 0x48534831 };

struct object {
    enum kind kind;
    char path[PATH_MAX];   /* the device, application or container folder */
    char device[PATH_MAX]; /* the device folder, to tell removal */
    int logged_in;         /* APP: the user PIN was verified through this handle */
    struct object *app;    /* CON: its application */
    EVP_MD_CTX *md;        /* HASH */
};

#define MAX_HANDLES 4096
static struct object *handles[MAX_HANDLES];
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int cancel_wait;

static struct object *new_handle(enum kind kind) {
    struct object *object = calloc(1, sizeof *object);
    if (object == NULL) return NULL;
    object->kind = kind;
    pthread_mutex_lock(&handles_lock);
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (handles[i] == NULL) {
            handles[i] = object;
            pthread_mutex_unlock(&handles_lock);
            return object;
        }
    }
    pthread_mutex_unlock(&handles_lock);
    free(object);
    return NULL;
}

/* The live handle of this kind, or NULL (never given out, closed, or another kind). */
static struct object *handle_of(HANDLE handle, enum kind kind) {
    struct object *found = NULL;
    pthread_mutex_lock(&handles_lock);
    for (int i = 0; i < MAX_HANDLES && handle != NULL; i++) {
        if (handles[i] == handle && handles[i]->kind == kind) {
            found = handles[i];
            break;
        }
    }
    pthread_mutex_unlock(&handles_lock);
    return found;
}

static void drop_handle(struct object *object) {
    pthread_mutex_lock(&handles_lock);
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (handles[i] == object) handles[i] = NULL;
    }
    pthread_mutex_unlock(&handles_lock);
    if (object->md != NULL) EVP_MD_CTX_free(object->md);
    free(object);
}

/* --- files --------------------------------------------------------------------------------------- */

static const char *store(void) {
    const char *dir = getenv("SOFTSKF_DIR");
    return dir != NULL && dir[0] != '\0' ? dir : NULL;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int present(const struct object *object) { return is_dir(object->device); }

static int join(char *out, const char *a, const char *b) {
    return snprintf(out, PATH_MAX, "%s/%s", a, b) < PATH_MAX;
}

static int read_file(const char *path, BYTE **data, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return 0;
    BYTE *buffer = NULL;
    size_t used = 0, room = 0;
    for (;;) {
        if (used == room) {
            room = room ? room * 2 : 4096;
            BYTE *grown = realloc(buffer, room);
            if (grown == NULL) {
                free(buffer);
                fclose(file);
                return 0;
            }
            buffer = grown;
        }
        size_t got = fread(buffer + used, 1, room - used, file);
        used += got;
        if (got == 0) break;
    }
    fclose(file);
    *data = buffer;
    *size = used;
    return 1;
}

/* The value of `key=` in a key=value file, or an empty string. */
static void conf_value(const char *path, const char *key, char *out, size_t out_size) {
    out[0] = '\0';
    FILE *file = fopen(path, "r");
    if (file == NULL) return;
    char line[512];
    size_t key_len = strlen(key);
    while (fgets(line, sizeof line, file) != NULL) {
        if (strncmp(line, key, key_len) == 0 && line[key_len] == '=') {
            char *value = line + key_len + 1;
            value[strcspn(value, "\r\n")] = '\0';
            snprintf(out, out_size, "%s", value);
            break;
        }
    }
    fclose(file);
}

static int misbehaves(const struct object *object, const char *how) {
    char path[PATH_MAX], word[64];
    if (!join(path, object->device, "misbehave")) return 0;
    conf_value(path, "mode", word, sizeof word);
    return strcmp(word, how) == 0;
}

/* A double-NUL list of the sub-folders of `dir` (devices, applications, containers). */
static ULONG name_list(const char *dir, char *list, ULONG *size) {
    char names[8192];
    size_t used = 0;
    DIR *folder = opendir(dir);
    if (folder != NULL) {
        struct dirent *entry;
        while ((entry = readdir(folder)) != NULL) {
            char path[PATH_MAX];
            if (entry->d_name[0] == '.' || !join(path, dir, entry->d_name) || !is_dir(path)) continue;
            size_t len = strlen(entry->d_name) + 1;
            if (used + len + 1 > sizeof names) break;
            memcpy(names + used, entry->d_name, len);
            used += len;
        }
        closedir(folder);
    }
    names[used++] = '\0';
    if (used == 1) names[used++] = '\0'; /* an empty list is two NULs */
    if (list == NULL) {
        *size = (ULONG)used;
        return SAR_OK;
    }
    if (*size < used) {
        *size = (ULONG)used;
        return SAR_BUFFER_TOO_SMALL;
    }
    memcpy(list, names, used);
    *size = (ULONG)used;
    return SAR_OK;
}

/* Copy `data` out the SKF way: NULL asks the size, a short buffer is SAR_BUFFER_TOO_SMALL. */
static ULONG give(const BYTE *data, size_t size, BYTE *out, ULONG *out_len) {
    if (out == NULL) {
        *out_len = (ULONG)size;
        return SAR_OK;
    }
    if (*out_len < size) {
        *out_len = (ULONG)size;
        return SAR_BUFFER_TOO_SMALL;
    }
    memcpy(out, data, size);
    *out_len = (ULONG)size;
    return SAR_OK;
}

/* --- PINs ---------------------------------------------------------------------------------------- */

struct pin_state {
    char digest[65];
    ULONG max;
    ULONG remain;
    int is_default;
};

static void sha256_hex(const char *text, char out[65]) {
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_Digest(text, strlen(text), digest, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", digest[i]);
    out[64] = '\0';
}

static int read_pin(const char *app, struct pin_state *pin) {
    char path[PATH_MAX], value[128];
    if (!join(path, app, "pin.conf")) return 0;
    conf_value(path, "user", pin->digest, sizeof pin->digest);
    conf_value(path, "max", value, sizeof value);
    pin->max = (ULONG)strtoul(value, NULL, 10);
    conf_value(path, "remain", value, sizeof value);
    pin->remain = (ULONG)strtoul(value, NULL, 10);
    conf_value(path, "default", value, sizeof value);
    pin->is_default = strcmp(value, "1") == 0;
    return strlen(pin->digest) == 64 && pin->max > 0;
}

static int write_pin(const char *app, const struct pin_state *pin) {
    char path[PATH_MAX], temporary[PATH_MAX];
    if (!join(path, app, "pin.conf") || snprintf(temporary, PATH_MAX, "%s.%d.tmp", path, (int)getpid()) >= PATH_MAX)
        return 0;
    FILE *file = fopen(temporary, "w");
    if (file == NULL) return 0;
    fprintf(file, "user=%s\nmax=%u\nremain=%u\ndefault=%d\n", pin->digest, pin->max, pin->remain, pin->is_default);
    if (fflush(file) != 0 || fsync(fileno(file)) != 0) {
        fclose(file);
        unlink(temporary);
        return 0;
    }
    fclose(file);
    return rename(temporary, path) == 0;
}

static int lock_pins(const char *app) {
    char path[PATH_MAX];
    if (!join(path, app, "pin.lock")) return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void unlock_pins(int fd) {
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* Check `given` against the user PIN, counting a wrong one; the SAR and the tries left. */
static ULONG check_pin(const char *app, const char *given, ULONG *retry_count, struct pin_state *out) {
    int lock = lock_pins(app);
    if (lock < 0) return SAR_FILEERR;
    struct pin_state pin;
    ULONG result;
    if (!read_pin(app, &pin)) {
        result = SAR_FILEERR;
    } else if (pin.remain == 0) {
        result = SAR_PIN_LOCKED;
    } else {
        char digest[65];
        sha256_hex(given, digest);
        if (strcmp(digest, pin.digest) == 0) {
            int changed = pin.remain != pin.max; /* a device writes its counter only when it moves */
            pin.remain = pin.max;
            result = !changed || write_pin(app, &pin) ? SAR_OK : SAR_FILEERR;
        } else {
            pin.remain -= 1;
            result = write_pin(app, &pin) ? SAR_PIN_INCORRECT : SAR_FILEERR;
        }
    }
    if (retry_count != NULL) *retry_count = result == SAR_FILEERR ? 0 : pin.remain;
    if (out != NULL) *out = pin;
    unlock_pins(lock);
    return result;
}

/* --- devices ------------------------------------------------------------------------------------- */

EXPORT ULONG SKF_EnumDev(long present_only, char *list, ULONG *size) {
    (void)present_only;
    if (size == NULL) return SAR_INVALIDPARAMERR;
    if (store() == NULL) return name_list("/nonexistent-softskf-store", list, size);
    ULONG result = name_list(store(), list, size);
    if (result == SAR_OK && list != NULL) {
        /* a device told to misbehave lists a name without its NUL end */
        char path[PATH_MAX], word[64];
        for (char *name = list; *name != '\0'; name += strlen(name) + 1) {
            char device[PATH_MAX];
            if (!join(device, store(), name) || !join(path, device, "misbehave")) continue;
            conf_value(path, "mode", word, sizeof word);
            if (strcmp(word, "bad-name-list") == 0) memset(list, 'x', *size);
        }
    }
    return result;
}

EXPORT ULONG SKF_ConnectDev(const char *name, HANDLE *device) {
    if (name == NULL || device == NULL || store() == NULL || strchr(name, '/') != NULL) return SAR_INVALIDPARAMERR;
    struct object *object = new_handle(DEV);
    if (object == NULL) return SAR_FAIL;
    if (!join(object->path, store(), name) || !is_dir(object->path)) {
        drop_handle(object);
        return SAR_DEVICE_REMOVED;
    }
    memcpy(object->device, object->path, PATH_MAX);
    *device = object;
    return SAR_OK;
}

EXPORT ULONG SKF_DisConnectDev(HANDLE handle) {
    struct object *device = handle_of(handle, DEV);
    if (device == NULL) return SAR_INVALIDHANDLEERR;
    drop_handle(device);
    return SAR_OK;
}

EXPORT ULONG SKF_GetDevInfo(HANDLE handle, DEVINFO *info) {
    struct object *device = handle_of(handle, DEV);
    if (device == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(device)) return SAR_DEVICE_REMOVED;
    if (info == NULL) return SAR_INVALIDPARAMERR;
    char path[PATH_MAX];
    if (!join(path, device->path, "device.conf")) return SAR_FILEERR;
    memset(info, 0, sizeof *info);
    info->Version.major = 1;
    conf_value(path, "manufacturer", info->Manufacturer, sizeof info->Manufacturer);
    conf_value(path, "issuer", info->Issuer, sizeof info->Issuer);
    conf_value(path, "label", info->Label, sizeof info->Label);
    conf_value(path, "serial", info->SerialNumber, sizeof info->SerialNumber);
    info->HWVersion.major = 1;
    info->FirmwareVersion.major = 1;
    info->AlgAsymCap = 0x00020100u | 0x00010000u; /* SM2, RSA */
    info->AlgHashCap = SGD_SM3 | SGD_SHA256;
    info->MaxECCBufferSize = 1024;
    info->MaxBufferSize = 4096;
    return SAR_OK;
}

/* Block until a device comes (event 1) or goes (event 2); its name. */
EXPORT ULONG SKF_WaitForDevEvent(char *name, ULONG *name_len, ULONG *event) {
    if (name == NULL || name_len == NULL || event == NULL || store() == NULL) return SAR_INVALIDPARAMERR;
    char before[8192], now[8192];
    ULONG before_size = sizeof before;
    if (name_list(store(), before, &before_size) != SAR_OK) return SAR_FAIL;
    cancel_wait = 0;
    while (!cancel_wait) {
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
        ULONG now_size = sizeof now;
        if (name_list(store(), now, &now_size) != SAR_OK) return SAR_FAIL;
        const char *lists[2] = {now, before}, *others[2] = {before, now};
        for (int which = 0; which < 2; which++) {
            for (const char *item = lists[which]; *item != '\0'; item += strlen(item) + 1) {
                int found = 0;
                for (const char *other = others[which]; *other != '\0'; other += strlen(other) + 1)
                    found |= strcmp(item, other) == 0;
                if (!found) {
                    size_t len = strlen(item) + 1;
                    if (*name_len < len) {
                        *name_len = (ULONG)len;
                        return SAR_BUFFER_TOO_SMALL;
                    }
                    memcpy(name, item, len);
                    *name_len = (ULONG)len;
                    *event = which == 0 ? 1 : 2;
                    return SAR_OK;
                }
            }
        }
    }
    return SAR_FAIL;
}

EXPORT ULONG SKF_CancelWaitForDevEvent(void) {
    cancel_wait = 1;
    return SAR_OK;
}

/* --- applications and PINs ----------------------------------------------------------------------- */

EXPORT ULONG SKF_EnumApplication(HANDLE handle, char *list, ULONG *size) {
    struct object *device = handle_of(handle, DEV);
    if (device == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(device)) return SAR_DEVICE_REMOVED;
    if (size == NULL) return SAR_INVALIDPARAMERR;
    return name_list(device->path, list, size);
}

EXPORT ULONG SKF_OpenApplication(HANDLE handle, const char *name, HANDLE *application) {
    struct object *device = handle_of(handle, DEV);
    if (device == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(device)) return SAR_DEVICE_REMOVED;
    if (name == NULL || application == NULL || strchr(name, '/') != NULL) return SAR_INVALIDPARAMERR;
    struct object *app = new_handle(APP);
    if (app == NULL) return SAR_FAIL;
    if (!join(app->path, device->path, name) || !is_dir(app->path)) {
        drop_handle(app);
        return SAR_APPLICATION_NOT_EXISTS;
    }
    memcpy(app->device, device->device, PATH_MAX);
    *application = app;
    return SAR_OK;
}

EXPORT ULONG SKF_CloseApplication(HANDLE handle) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    drop_handle(app);
    return SAR_OK;
}

EXPORT ULONG SKF_ClearSecureState(HANDLE handle) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    app->logged_in = 0;
    return SAR_OK;
}

EXPORT ULONG SKF_VerifyPIN(HANDLE handle, ULONG type, const char *pin, ULONG *retry_count) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(app)) return SAR_DEVICE_REMOVED;
    if (type != USER_TYPE) return SAR_USER_TYPE_INVALID;
    if (pin == NULL || retry_count == NULL) return SAR_INVALIDPARAMERR;
    ULONG result = check_pin(app->path, pin, retry_count, NULL);
    app->logged_in = result == SAR_OK;
    return result;
}

EXPORT ULONG SKF_ChangePIN(HANDLE handle, ULONG type, const char *old_pin, const char *new_pin, ULONG *retry_count) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(app)) return SAR_DEVICE_REMOVED;
    if (type != USER_TYPE) return SAR_USER_TYPE_INVALID;
    if (old_pin == NULL || new_pin == NULL || retry_count == NULL) return SAR_INVALIDPARAMERR;
    size_t len = strlen(new_pin);
    if (len < MIN_PIN || len > MAX_PIN) return SAR_PIN_LEN_RANGE;
    struct pin_state pin;
    ULONG result = check_pin(app->path, old_pin, retry_count, &pin);
    if (result != SAR_OK) return result;
    int lock = lock_pins(app->path);
    if (lock < 0) return SAR_FILEERR;
    sha256_hex(new_pin, pin.digest);
    pin.is_default = 0;
    pin.remain = pin.max;
    result = write_pin(app->path, &pin) ? SAR_OK : SAR_FILEERR;
    unlock_pins(lock);
    return result;
}

EXPORT ULONG SKF_GetPINInfo(HANDLE handle, ULONG type, ULONG *max, ULONG *remain, void *is_default) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(app)) return SAR_DEVICE_REMOVED;
    if (type != USER_TYPE) return SAR_USER_TYPE_INVALID;
    if (max == NULL || remain == NULL || is_default == NULL) return SAR_INVALIDPARAMERR;
    int lock = lock_pins(app->path);
    struct pin_state pin;
    int ok = lock >= 0 && read_pin(app->path, &pin);
    unlock_pins(lock);
    if (!ok) return SAR_FILEERR;
    *max = pin.max;
    *remain = pin.remain;
    const char *width = getenv("SOFTSKF_BOOL_BYTES");
    if (width != NULL && strcmp(width, "4") == 0)
        *(int32_t *)is_default = pin.is_default;
    else
        *(int64_t *)is_default = pin.is_default;
    return SAR_OK;
}

/* --- containers ---------------------------------------------------------------------------------- */

EXPORT ULONG SKF_EnumContainer(HANDLE handle, char *list, ULONG *size) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(app)) return SAR_DEVICE_REMOVED;
    if (size == NULL) return SAR_INVALIDPARAMERR;
    return name_list(app->path, list, size);
}

EXPORT ULONG SKF_OpenContainer(HANDLE handle, const char *name, HANDLE *container) {
    struct object *app = handle_of(handle, APP);
    if (app == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(app)) return SAR_DEVICE_REMOVED;
    if (name == NULL || container == NULL || strchr(name, '/') != NULL) return SAR_INVALIDPARAMERR;
    struct object *con = new_handle(CON);
    if (con == NULL) return SAR_FAIL;
    if (!join(con->path, app->path, name) || !is_dir(con->path)) {
        drop_handle(con);
        return SAR_INVALIDPARAMERR;
    }
    memcpy(con->device, app->device, PATH_MAX);
    con->app = app;
    *container = con;
    return SAR_OK;
}

EXPORT ULONG SKF_CloseContainer(HANDLE handle) {
    struct object *con = handle_of(handle, CON);
    if (con == NULL) return SAR_INVALIDHANDLEERR;
    drop_handle(con);
    return SAR_OK;
}

EXPORT ULONG SKF_GetContainerType(HANDLE handle, ULONG *type) {
    struct object *con = handle_of(handle, CON);
    if (con == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(con)) return SAR_DEVICE_REMOVED;
    if (type == NULL) return SAR_INVALIDPARAMERR;
    char path[PATH_MAX];
    BYTE *data = NULL;
    size_t size = 0;
    *type = 0;
    if (join(path, con->path, "type") && read_file(path, &data, &size)) {
        *type = size > 0 ? (ULONG)(data[0] - '0') : 0;
        free(data);
    }
    return SAR_OK;
}

static EVP_PKEY *container_key(const struct object *con) {
    char path[PATH_MAX];
    if (!join(path, con->path, "sign.key")) return NULL;
    FILE *file = fopen(path, "r");
    if (file == NULL) return NULL;
    EVP_PKEY *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    return key;
}

EXPORT ULONG SKF_ExportCertificate(HANDLE handle, long sign, BYTE *out, ULONG *out_len) {
    struct object *con = handle_of(handle, CON);
    if (con == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(con)) return SAR_DEVICE_REMOVED;
    if (out_len == NULL) return SAR_INVALIDPARAMERR;
    if ((int)sign == 0) return SAR_CERTNOTFOUNTERR; /* only signing certificates here */
    char path[PATH_MAX];
    BYTE *data = NULL;
    size_t size = 0;
    if (!join(path, con->path, "sign.der") || !read_file(path, &data, &size)) return SAR_CERTNOTFOUNTERR;
    if (misbehaves(con, "short-cert") && size > 16) size = 16;
    ULONG result = give(data, size, out, out_len);
    if (misbehaves(con, "oversize-length") && result == SAR_OK) *out_len = 0x7fffffffu;
    free(data);
    return result;
}

EXPORT ULONG SKF_ExportPublicKey(HANDLE handle, long sign, BYTE *out, ULONG *out_len) {
    struct object *con = handle_of(handle, CON);
    if (con == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(con)) return SAR_DEVICE_REMOVED;
    if (out_len == NULL) return SAR_INVALIDPARAMERR;
    if ((int)sign == 0) return SAR_KEYNOTFOUNTERR;
    EVP_PKEY *key = container_key(con);
    if (key == NULL) return SAR_KEYNOTFOUNTERR;
    ULONG result;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        result = SAR_NOTSUPPORTYETERR; /* an RSA container's key: read it from its certificate */
    } else {
        unsigned char point[133];
        size_t point_len = 0;
        ECCPUBLICKEYBLOB blob;
        memset(&blob, 0, sizeof blob);
        if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &point_len) != 1 ||
            point_len != 65 || point[0] != 0x04) {
            result = SAR_FAIL;
        } else {
            blob.BitLen = 256;
            memcpy(blob.XCoordinate + 32, point + 1, 32);
            memcpy(blob.YCoordinate + 32, point + 33, 32);
            result = give((const BYTE *)&blob, sizeof blob, out, out_len);
        }
    }
    EVP_PKEY_free(key);
    return result;
}

/* --- hashing ------------------------------------------------------------------------------------- */

/* Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GM/T 0003.2), from the curve's own
 * parameters in OpenSSL. */
static int sm2_z(const ECCPUBLICKEYBLOB *key, const BYTE *id, ULONG id_len, unsigned char z[32]) {
    int ok = 0;
    EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_sm2);
    BIGNUM *p = BN_new(), *a = BN_new(), *b = BN_new(), *x = BN_new(), *y = BN_new();
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buffer[32];
    if (group == NULL || p == NULL || a == NULL || b == NULL || x == NULL || y == NULL || md == NULL) goto done;
    if (id_len > 8191 || !EC_GROUP_get_curve(group, p, a, b, NULL)) goto done;
    if (!EC_POINT_get_affine_coordinates(group, EC_GROUP_get0_generator(group), x, y, NULL)) goto done;
    unsigned char entl[2] = {(unsigned char)((id_len * 8) >> 8), (unsigned char)((id_len * 8) & 0xff)};
    if (!EVP_DigestInit_ex(md, EVP_sm3(), NULL) || !EVP_DigestUpdate(md, entl, 2) ||
        !EVP_DigestUpdate(md, id, id_len))
        goto done;
    const BIGNUM *parts[4] = {a, b, x, y};
    for (int i = 0; i < 4; i++) {
        if (BN_bn2binpad(parts[i], buffer, 32) != 32 || !EVP_DigestUpdate(md, buffer, 32)) goto done;
    }
    if (!EVP_DigestUpdate(md, key->XCoordinate + 32, 32) || !EVP_DigestUpdate(md, key->YCoordinate + 32, 32)) goto done;
    unsigned int len = 0;
    ok = EVP_DigestFinal_ex(md, z, &len) && len == 32;
done:
    EVP_MD_CTX_free(md);
    BN_free(p), BN_free(a), BN_free(b), BN_free(x), BN_free(y);
    EC_GROUP_free(group);
    return ok;
}

EXPORT ULONG SKF_DigestInit(HANDLE handle, ULONG algorithm, ECCPUBLICKEYBLOB *key, const BYTE *id, ULONG id_len,
                            HANDLE *hash) {
    struct object *device = handle_of(handle, DEV);
    if (device == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(device)) return SAR_DEVICE_REMOVED;
    if (hash == NULL || (algorithm != SGD_SM3 && algorithm != SGD_SHA256)) return SAR_INVALIDPARAMERR;
    if (key != NULL && (algorithm != SGD_SM3 || id == NULL || id_len == 0)) return SAR_INVALIDPARAMERR;
    struct object *object = new_handle(HASH);
    if (object == NULL) return SAR_FAIL;
    memcpy(object->device, device->device, PATH_MAX);
    object->md = EVP_MD_CTX_new();
    if (object->md == NULL || !EVP_DigestInit_ex(object->md, algorithm == SGD_SM3 ? EVP_sm3() : EVP_sha256(), NULL)) {
        drop_handle(object);
        return SAR_FAIL;
    }
    if (key != NULL) {
        unsigned char z[32];
        if (!sm2_z(key, id, id_len, z) || !EVP_DigestUpdate(object->md, z, 32)) {
            drop_handle(object);
            return SAR_FAIL;
        }
    }
    *hash = object;
    return SAR_OK;
}

EXPORT ULONG SKF_Digest(HANDLE handle, const BYTE *data, ULONG data_len, BYTE *out, ULONG *out_len) {
    struct object *hash = handle_of(handle, HASH);
    if (hash == NULL || hash->md == NULL) return SAR_INVALIDHANDLEERR;
    if (!present(hash)) return SAR_DEVICE_REMOVED;
    if (out_len == NULL || (data == NULL && data_len > 0)) return SAR_INVALIDPARAMERR;
    ULONG size = (ULONG)EVP_MD_CTX_get_size(hash->md);
    if (out == NULL) {
        *out_len = size;
        return SAR_OK;
    }
    if (*out_len < size) {
        *out_len = size;
        return SAR_BUFFER_TOO_SMALL;
    }
    unsigned int len = 0;
    if (!EVP_DigestUpdate(hash->md, data, data_len) || !EVP_DigestFinal_ex(hash->md, out, &len)) return SAR_FAIL;
    EVP_MD_CTX_free(hash->md);
    hash->md = NULL; /* one digest per handle: the handle is spent */
    *out_len = len;
    return SAR_OK;
}

EXPORT ULONG SKF_CloseHandle(HANDLE handle) {
    struct object *hash = handle_of(handle, HASH);
    if (hash == NULL) return SAR_INVALIDHANDLEERR;
    drop_handle(hash);
    return SAR_OK;
}

/* --- signatures ---------------------------------------------------------------------------------- */

static ULONG signing_key(struct object *con, int wanted_type, EVP_PKEY **key) {
    if (!present(con)) return SAR_DEVICE_REMOVED;
    if (handle_of(con->app, APP) == NULL) return SAR_INVALIDHANDLEERR; /* its application was closed */
    if (!con->app->logged_in) return SAR_USER_NOT_LOGGED_IN;
    *key = container_key(con);
    if (*key == NULL) return SAR_KEYNOTFOUNTERR;
    if (EVP_PKEY_get_base_id(*key) != wanted_type && !(wanted_type == EVP_PKEY_SM2 &&
                                                      EVP_PKEY_is_a(*key, "SM2"))) {
        EVP_PKEY_free(*key);
        return SAR_KEYNOTFOUNTERR;
    }
    return SAR_OK;
}

EXPORT ULONG SKF_ECCSignData(HANDLE handle, const BYTE *digest, ULONG digest_len, ECCSIGNATUREBLOB *signature) {
    struct object *con = handle_of(handle, CON);
    if (con == NULL) return SAR_INVALIDHANDLEERR;
    if (digest == NULL || digest_len != 32 || signature == NULL) return SAR_INVALIDPARAMERR;
    EVP_PKEY *key = NULL;
    ULONG result = signing_key(con, EVP_PKEY_SM2, &key);
    if (result != SAR_OK) return result;
    result = SAR_FAIL;
    unsigned char der[80];
    size_t der_len = sizeof der;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    ECDSA_SIG *sig = NULL;
    if (ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_sign(ctx, der, &der_len, digest, 32) == 1) {
        const unsigned char *cursor = der;
        sig = d2i_ECDSA_SIG(NULL, &cursor, (long)der_len);
    }
    if (sig != NULL) {
        memset(signature, 0, sizeof *signature);
        if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), signature->r + 32, 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(sig), signature->s + 32, 32) == 32)
            result = SAR_OK;
        if (misbehaves(con, "zero-signature")) memset(signature, 0, sizeof *signature);
    }
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key);
    return result;
}

/* RSA PKCS#1 v1.5 on `data` as given (the caller passes the DigestInfo). */
EXPORT ULONG SKF_RSASignData(HANDLE handle, const BYTE *data, ULONG data_len, BYTE *out, ULONG *out_len) {
    struct object *con = handle_of(handle, CON);
    if (con == NULL) return SAR_INVALIDHANDLEERR;
    if (data == NULL || out_len == NULL) return SAR_INVALIDPARAMERR;
    EVP_PKEY *key = NULL;
    ULONG result = signing_key(con, EVP_PKEY_RSA, &key);
    if (result != SAR_OK) return result;
    size_t size = (size_t)EVP_PKEY_get_size(key);
    if (data_len + 11 > size) {
        result = SAR_INVALIDPARAMERR;
    } else if (out == NULL) {
        *out_len = (ULONG)size;
    } else if (*out_len < size) {
        *out_len = (ULONG)size;
        result = SAR_BUFFER_TOO_SMALL;
    } else {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
        size_t len = size;
        result = ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 &&
                         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
                         EVP_PKEY_sign(ctx, out, &len, data, data_len) == 1
                     ? SAR_OK
                     : SAR_FAIL;
        *out_len = (ULONG)len;
        EVP_PKEY_CTX_free(ctx);
    }
    EVP_PKEY_free(key);
    return result;
}
