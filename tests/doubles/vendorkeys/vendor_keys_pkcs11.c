/*
 * A test double: a PKCS#11 module that is SoftHSM2 (dlopen'ed from $VENDOR_KEYS_REAL_MODULE) but
 * for what a Chinese UKey's module adds for SM2, with the vendor-defined values TASS's modules use
 * (xipki/ipkcs11wrapper's vendor.conf): a key whose CKA_LABEL contains "vendor-sm2" reports
 * CKA_KEY_TYPE 0x80000004 (CKK_SM2); the mechanism list gains 0x80008100 (CKM_SM3_SM2), which
 * signs SM3(Z || data) at the GM/T 0009 default ID and returns r || s, with the SM2 key in
 * $VENDOR_KEYS_SM2_DIR/<CKA_ID in hex>.pem when there is one (the SoftHSM2 key with that CKA_ID
 * stands in as the handle). A vendor key without such a file cannot sign (CKR_KEY_TYPE_INCONSISTENT).
 * A search naming CKA_KEY_TYPE matches the key types reported here, as a vendor's module would.
 *
 * Why a double: no PKCS#11 module with SM2 exists in Debian, PyPI or npm, and SoftHSM2 makes only
 * the standard key types. Logins, sessions, objects and every other call are SoftHSM2's own.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef CK_ULONG CK_SESSION_HANDLE;
typedef CK_ULONG CK_OBJECT_HANDLE;
typedef CK_ULONG CK_ATTRIBUTE_TYPE;
typedef struct { CK_ATTRIBUTE_TYPE type; void *pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;
typedef struct { unsigned char major, minor; } CK_VERSION;
#define FUNCTIONS 68            /* the v2.40 function list: CK_VERSION, then 68 pointers */
#define GET_FUNCTION_LIST 3     /* the index of C_GetFunctionList in it */
#define GET_MECHANISM_LIST 7
#define GET_SESSION_INFO 15
#define GET_ATTRIBUTE_VALUE 24  /* the index of C_GetAttributeValue */
#define FIND_OBJECTS_INIT 26
#define FIND_OBJECTS 27
#define SIGN_INIT 42
#define SIGN 43
typedef struct { CK_VERSION version; void *functions[FUNCTIONS]; } FUNCTION_LIST;
typedef CK_RV (*GetFunctionList)(FUNCTION_LIST **);
typedef CK_RV (*GetAttributeValue)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE *, CK_ULONG);
typedef struct { CK_ULONG mechanism; void *pParameter; CK_ULONG ulParameterLen; } CK_MECHANISM;
typedef struct { CK_ULONG slotID, state, flags, ulDeviceError; } CK_SESSION_INFO;
typedef CK_RV (*FindObjectsInit)(CK_SESSION_HANDLE, CK_ATTRIBUTE *, CK_ULONG);
typedef CK_RV (*FindObjects)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE *, CK_ULONG, CK_ULONG *);
typedef CK_RV (*GetMechanismList)(CK_ULONG, CK_ULONG *, CK_ULONG *);
typedef CK_RV (*GetSessionInfo)(CK_SESSION_HANDLE, CK_SESSION_INFO *);
typedef CK_RV (*SignInit)(CK_SESSION_HANDLE, CK_MECHANISM *, CK_OBJECT_HANDLE);
typedef CK_RV (*Sign)(CK_SESSION_HANDLE, unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);

#define CKA_LABEL 0x03UL
#define CKA_ID 0x102UL
#define CKA_KEY_TYPE 0x100UL
#define VENDOR_SM2 0x80000004UL
#define VENDOR_SM3_SM2 0x80008100UL
#define CKR_OK 0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_KEY_TYPE_INCONSISTENT 0x63UL
#define CKR_OPERATION_NOT_INITIALIZED 0x91UL
#define CKR_BUFFER_TOO_SMALL 0x150UL
#define CKR_USER_NOT_LOGGED_IN 0x101UL

static FUNCTION_LIST ours;
static GetAttributeValue real_get_attribute_value;
static GetMechanismList real_get_mechanism_list;
static FindObjectsInit real_find_objects_init;
static FindObjects real_find_objects;
static GetSessionInfo real_get_session_info;
static SignInit real_sign_init;
static Sign real_sign;

#define SESSIONS 256
static struct { CK_SESSION_HANDLE session; char key_path[512]; int active; } pending[SESSIONS];
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
/* a search under way that named CKA_KEY_TYPE: SoftHSM2 searches without it, the type is matched here */
static struct { CK_SESSION_HANDLE session; CK_ULONG key_type; int active; } typed_searches[SESSIONS];

static int is_vendor_key(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) {
    char label[256];
    CK_ATTRIBUTE query = {CKA_LABEL, label, sizeof label - 1};
    if (real_get_attribute_value(session, object, &query, 1) != 0 || query.ulValueLen >= sizeof label) return 0;
    label[query.ulValueLen] = '\0';
    return strstr(label, "vendor-sm2") != NULL;
}

static CK_RV get_attribute_value(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *template,
                                 CK_ULONG count) {
    CK_RV rv = real_get_attribute_value(session, object, template, count);
    for (CK_ULONG i = 0; i < count; i++) {
        if (template[i].type == CKA_KEY_TYPE && template[i].pValue != NULL &&
            template[i].ulValueLen == sizeof(CK_ULONG) && is_vendor_key(session, object))
            *(CK_ULONG *)template[i].pValue = VENDOR_SM2;
    }
    return rv;
}

static CK_RV find_objects_init(CK_SESSION_HANDLE session, CK_ATTRIBUTE *template, CK_ULONG count) {
    CK_ATTRIBUTE rest[32];
    CK_ULONG kept = 0, wanted = 0;
    int typed = 0;
    if (count > 32 || (count > 0 && template == NULL)) return real_find_objects_init(session, template, count);
    for (CK_ULONG i = 0; i < count; i++) {
        if (template[i].type == CKA_KEY_TYPE && template[i].pValue != NULL && template[i].ulValueLen == sizeof(CK_ULONG)) {
            wanted = *(CK_ULONG *)template[i].pValue;
            typed = 1;
        } else {
            rest[kept++] = template[i];
        }
    }
    CK_RV rv = typed ? real_find_objects_init(session, rest, kept) : real_find_objects_init(session, template, count);
    int slot = (int)(session % SESSIONS);
    pthread_mutex_lock(&pending_lock);
    typed_searches[slot].session = session;
    typed_searches[slot].key_type = wanted;
    typed_searches[slot].active = typed && rv == CKR_OK;
    pthread_mutex_unlock(&pending_lock);
    return rv;
}

static CK_RV find_objects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count) {
    int slot = (int)(session % SESSIONS);
    pthread_mutex_lock(&pending_lock);
    int typed = typed_searches[slot].active && typed_searches[slot].session == session;
    CK_ULONG wanted = typed_searches[slot].key_type;
    pthread_mutex_unlock(&pending_lock);
    if (!typed) return real_find_objects(session, found, max, count);
    if (found == NULL || count == NULL) return CKR_ARGUMENTS_BAD;
    *count = 0;
    while (*count < max) {
        CK_OBJECT_HANDLE one;
        CK_ULONG got = 0, type = 0;
        CK_RV rv = real_find_objects(session, &one, 1, &got);
        if (rv != CKR_OK) return rv;
        if (got == 0) break;
        CK_ATTRIBUTE query = {CKA_KEY_TYPE, &type, sizeof type};
        if (get_attribute_value(session, one, &query, 1) == CKR_OK && type == wanted) found[(*count)++] = one;
    }
    return CKR_OK;
}

static CK_RV get_mechanism_list(CK_ULONG slot, CK_ULONG *list, CK_ULONG *count) {
    CK_ULONG theirs = 0;
    CK_RV rv = real_get_mechanism_list(slot, NULL, &theirs);
    if (rv != CKR_OK || count == NULL) return rv != CKR_OK ? rv : CKR_ARGUMENTS_BAD;
    if (list == NULL) {
        *count = theirs + 1;
        return CKR_OK;
    }
    if (*count < theirs + 1) {
        *count = theirs + 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    rv = real_get_mechanism_list(slot, list, &theirs);
    if (rv == CKR_OK) {
        list[theirs] = VENDOR_SM3_SM2;
        *count = theirs + 1;
    }
    return rv;
}

static CK_RV sign_init(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key) {
    if (mechanism == NULL || mechanism->mechanism != VENDOR_SM3_SM2) return real_sign_init(session, mechanism, key);
    unsigned char id[128];
    CK_ATTRIBUTE query = {CKA_ID, id, sizeof id};
    if (!is_vendor_key(session, key) || real_get_attribute_value(session, key, &query, 1) != CKR_OK)
        return CKR_KEY_TYPE_INCONSISTENT;
    const char *dir = getenv("VENDOR_KEYS_SM2_DIR");
    char path[512];
    int used = snprintf(path, sizeof path, "%s/", dir ? dir : ".");
    for (CK_ULONG i = 0; i < query.ulValueLen && used + 3 < (int)sizeof path; i++) used += sprintf(path + used, "%02x", id[i]);
    snprintf(path + used, sizeof path - used, ".pem");
    pthread_mutex_lock(&pending_lock);
    int slot = (int)(session % SESSIONS);
    pending[slot].session = session;
    snprintf(pending[slot].key_path, sizeof pending[slot].key_path, "%s", path);
    pending[slot].active = 1;
    pthread_mutex_unlock(&pending_lock);
    return CKR_OK;
}

static int sm2_sign(const char *key_path, const unsigned char *data, size_t len, unsigned char out[64]) {
    FILE *file = fopen(key_path, "r");
    if (file == NULL) return 0;
    EVP_PKEY *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *ctx = key ? EVP_PKEY_CTX_new(key, NULL) : NULL;
    unsigned char der[80];
    size_t der_len = sizeof der;
    int ok = key && md && ctx && EVP_PKEY_CTX_set1_id(ctx, "1234567812345678", 16) == 1;
    if (ok) {
        EVP_MD_CTX_set_pkey_ctx(md, ctx);
        ok = EVP_DigestSignInit(md, NULL, EVP_sm3(), NULL, key) == 1 && EVP_DigestSign(md, der, &der_len, data, len) == 1;
    }
    ECDSA_SIG *sig = NULL;
    if (ok) {
        const unsigned char *cursor = der;
        sig = d2i_ECDSA_SIG(NULL, &cursor, (long)der_len);
        ok = sig != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32) == 32 &&
             BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32) == 32;
    }
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok;
}

static CK_RV sign(CK_SESSION_HANDLE session, unsigned char *data, CK_ULONG len, unsigned char *out, CK_ULONG *out_len) {
    char path[512] = {0};
    int slot = (int)(session % SESSIONS);
    pthread_mutex_lock(&pending_lock);
    int ours_pending = pending[slot].active && pending[slot].session == session;
    if (ours_pending) snprintf(path, sizeof path, "%s", pending[slot].key_path);
    pthread_mutex_unlock(&pending_lock);
    if (!ours_pending) return real_sign(session, data, len, out, out_len);
    if (out_len == NULL) return CKR_ARGUMENTS_BAD;
    if (out == NULL) {
        *out_len = 64;
        return CKR_OK;
    }
    if (*out_len < 64) {
        *out_len = 64;
        return CKR_BUFFER_TOO_SMALL;
    }
    pthread_mutex_lock(&pending_lock);
    pending[slot].active = 0;  /* the operation ends with its result, as C_Sign's does */
    pthread_mutex_unlock(&pending_lock);
    CK_SESSION_INFO info;
    if (real_get_session_info(session, &info) != CKR_OK || (info.state != 1 && info.state != 3))
        return CKR_USER_NOT_LOGGED_IN;
    if (!sm2_sign(path, data, len, out)) return CKR_KEY_TYPE_INCONSISTENT;
    *out_len = 64;
    return CKR_OK;
}

static CK_RV get_function_list(FUNCTION_LIST **list);

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(FUNCTION_LIST **list) {
    return get_function_list(list);
}

static CK_RV get_function_list(FUNCTION_LIST **list) {
    if (list == NULL) return CKR_ARGUMENTS_BAD;
    if (real_get_attribute_value == NULL) {
        const char *path = getenv("VENDOR_KEYS_REAL_MODULE");
        void *real = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        GetFunctionList get = real != NULL ? (GetFunctionList)dlsym(real, "C_GetFunctionList") : NULL;
        FUNCTION_LIST *theirs = NULL;
        if (get == NULL || get(&theirs) != 0 || theirs == NULL) return CKR_GENERAL_ERROR;
        memcpy(&ours, theirs, sizeof ours);
        real_get_attribute_value = (GetAttributeValue)theirs->functions[GET_ATTRIBUTE_VALUE];
        real_get_mechanism_list = (GetMechanismList)theirs->functions[GET_MECHANISM_LIST];
        real_find_objects_init = (FindObjectsInit)theirs->functions[FIND_OBJECTS_INIT];
        real_find_objects = (FindObjects)theirs->functions[FIND_OBJECTS];
        real_get_session_info = (GetSessionInfo)theirs->functions[GET_SESSION_INFO];
        real_sign_init = (SignInit)theirs->functions[SIGN_INIT];
        real_sign = (Sign)theirs->functions[SIGN];
        ours.functions[GET_ATTRIBUTE_VALUE] = (void *)get_attribute_value;
        ours.functions[GET_MECHANISM_LIST] = (void *)get_mechanism_list;
        ours.functions[FIND_OBJECTS_INIT] = (void *)find_objects_init;
        ours.functions[FIND_OBJECTS] = (void *)find_objects;
        ours.functions[SIGN_INIT] = (void *)sign_init;
        ours.functions[SIGN] = (void *)sign;
        ours.functions[GET_FUNCTION_LIST] = (void *)C_GetFunctionList;
    }
    *list = &ours;
    return 0;
}
