#!/bin/sh
# Builds key and certificate fixtures with openssl: the kind of material found
# hard-coded in camera firmware (web server key and self-signed certificate).
# Keys are random, so a re-run gives different bytes with the same structure.
# Run from this directory: sh recipe.sh
set -eu
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out pem-rsa-key.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out pem-ec-key.pem 2>/dev/null
openssl req -x509 -new -key pem-ec-key.pem -subj "/C=CN/O=IPCam/CN=192.168.1.64" -days 3650 \
	-set_serial 1 -out pem-cert.pem 2>/dev/null
openssl pkey -in pem-ec-key.pem -pubout -out pem-pubkey.pem
openssl pkcs8 -topk8 -in pem-ec-key.pem -v2 aes-256-cbc -passout pass:admin12345 -out pem-encrypted-key.pem
openssl x509 -in pem-cert.pem -outform DER -out der-cert.der
openssl pkey -in pem-rsa-key.pem -outform DER -out der-rsa-key.der

# An OpenSSH host key, as found in /etc/ssh of camera images (ssh-keygen).
rm -f pem-openssh-key.pem pem-openssh-key.pem.pub
ssh-keygen -q -t ed25519 -N '' -C 'root@ipcam' -f pem-openssh-key.pem
rm -f pem-openssh-key.pem.pub
chmod 644 pem-*.pem der-*.der
