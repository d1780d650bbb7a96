import re, sys
def dumps(path):
    lines = open(path).read().splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r'^(\d\d)\[(NET|ENC)\] (received packet|plain) => (\d+) bytes', lines[i])
        if m:
            tid, n = m.group(1), int(m.group(4))
            data = bytearray()
            j = i + 1
            while len(data) < n and j < len(lines):
                mm = re.match(r'^(\d\d)\[(?:NET|ENC)\]\s+(\d+): ((?:[0-9A-F]{2} ?)+)', lines[j])
                if mm and mm.group(1) == tid:
                    data += bytes.fromhex(mm.group(3)[:48].replace(' ', ''))
                j += 1
            assert len(data) == n, (path, i, len(data), n)
            out.append((m.group(3), data))
        i += 1
    return out
b = dumps('b/charon.log'); a = dumps('a/charon.log')
def strip(d):
    assert d[:4] == b'\0\0\0\0'; return d[4:]
items = [
 ("SA_INIT_REQUEST", "IKE_SA_INIT request (initiator -> responder, port 500)", b[0][1]),
 ("SA_INIT_RESPONSE", "IKE_SA_INIT response", a[0][1]),
 ("AUTH_REQUEST_FRAGMENT_1", "IKE_AUTH request, SKF 1/2 (port 4500, non-ESP marker removed)", strip(b[1][1])),
 ("AUTH_REQUEST_FRAGMENT_1_PLAIN", "decrypted plaintext of SKF 1/2 (charon 'plain' dump, no padding)", b[2][1]),
 ("AUTH_REQUEST_FRAGMENT_2", "IKE_AUTH request, SKF 2/2", strip(b[3][1])),
 ("AUTH_REQUEST_FRAGMENT_2_PLAIN", "decrypted plaintext of SKF 2/2", b[4][1]),
 ("AUTH_RESPONSE", "IKE_AUTH response (SK, not fragmented)", strip(a[3][1])),
 ("AUTH_RESPONSE_PLAIN", "decrypted plaintext of the IKE_AUTH response", a[4][1]),
 ("INFORMATIONAL_DELETE", "INFORMATIONAL request deleting the IKE SA", strip(b[6][1])),
 ("INFORMATIONAL_DELETE_PLAIN", "its decrypted plaintext", b[7][1]),
]
out = []
for name, doc, d in items:
    h = d.hex()
    chunks = [h[i:i+88] for i in range(0, len(h), 88)]
    out.append(f"/// {doc}: {len(d)} bytes.\npub const {name}: &str = concat!(\n" + "".join(f'    "{c}",\n' for c in chunks) + ");\n")
open('data.rs','w').write("\n".join(out))
