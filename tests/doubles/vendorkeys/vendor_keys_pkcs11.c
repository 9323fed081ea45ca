/*
 * A test double: a PKCS#11 module that is SoftHSM2 (dlopen'ed from $VENDOR_KEYS_REAL_MODULE) in all
 * but one thing: a private or public key whose CKA_LABEL contains "vendor-sm2" reports a
 * vendor-defined CKA_KEY_TYPE (0x80000004, CKK_VENDOR_DEFINED + 4, the value TASS's modules give
 * SM2 keys), as a Chinese UKey's module does for its SM2 keys.
 *
 * Why a double: no PKCS#11 module with vendor-defined (SM2) key types exists in Debian, PyPI or
 * npm, and SoftHSM2 makes only the standard key types. Everything else is SoftHSM2's own answer.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef CK_ULONG CK_SESSION_HANDLE;
typedef CK_ULONG CK_OBJECT_HANDLE;
typedef CK_ULONG CK_ATTRIBUTE_TYPE;
typedef struct { CK_ATTRIBUTE_TYPE type; void *pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;
typedef struct { unsigned char major, minor; } CK_VERSION;
#define FUNCTIONS 68            /* the v2.40 function list: CK_VERSION, then 68 pointers */
#define GET_FUNCTION_LIST 3     /* the index of C_GetFunctionList in it */
#define GET_ATTRIBUTE_VALUE 24  /* the index of C_GetAttributeValue */
typedef struct { CK_VERSION version; void *functions[FUNCTIONS]; } FUNCTION_LIST;
typedef CK_RV (*GetFunctionList)(FUNCTION_LIST **);
typedef CK_RV (*GetAttributeValue)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE *, CK_ULONG);

#define CKA_LABEL 0x03UL
#define CKA_KEY_TYPE 0x100UL
#define VENDOR_SM2 0x80000004UL

static FUNCTION_LIST ours;
static GetAttributeValue real_get_attribute_value;

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

static CK_RV get_function_list(FUNCTION_LIST **list);

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(FUNCTION_LIST **list) {
    return get_function_list(list);
}

static CK_RV get_function_list(FUNCTION_LIST **list) {
    if (list == NULL) return 0x7UL; /* CKR_ARGUMENTS_BAD */
    if (real_get_attribute_value == NULL) {
        const char *path = getenv("VENDOR_KEYS_REAL_MODULE");
        void *real = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        GetFunctionList get = real != NULL ? (GetFunctionList)dlsym(real, "C_GetFunctionList") : NULL;
        FUNCTION_LIST *theirs = NULL;
        if (get == NULL || get(&theirs) != 0 || theirs == NULL) return 0x5UL; /* CKR_GENERAL_ERROR */
        memcpy(&ours, theirs, sizeof ours);
        real_get_attribute_value = (GetAttributeValue)theirs->functions[GET_ATTRIBUTE_VALUE];
        ours.functions[GET_ATTRIBUTE_VALUE] = (void *)get_attribute_value;
        ours.functions[GET_FUNCTION_LIST] = (void *)C_GetFunctionList;
    }
    *list = &ours;
    return 0;
}
