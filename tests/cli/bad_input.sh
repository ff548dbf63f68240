#!/usr/bin/env bash
# Bad input is exit code 2 with one clear line naming the file, line, key or index and what to do; never a crash.
# usage: bad_input.sh TRAINDX_BINARY SOURCE_DIR
set -u
traindx=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect_error NAME EXPECTED_SUBSTRING COMMAND...: exit code 2 and the substring on stderr.
expect_error() {
  local name=$1 want=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" -ne 2 ]; then
    echo "FAIL $name: exit code $rc, expected 2"; cat "$tmp/err"; failures=$((failures + 1)); return
  fi
  if ! grep -qF -- "$want" "$tmp/err"; then
    echo "FAIL $name: stderr lacks '$want':"; cat "$tmp/err"; failures=$((failures + 1)); return
  fi
  if grep -q "Segmentation\|terminate called\|Aborted" "$tmp/err"; then
    echo "FAIL $name: crashed"; failures=$((failures + 1)); return
  fi
  echo "ok   $name: $(head -c 160 "$tmp/err" | head -1)"
}

cat >"$tmp/base.toml" <<'TOML'
[data]
source = "csv"
path = "TABLE"
[model]
layers = [ { type = "linear", out = 4 }, { type = "relu" }, { type = "linear" } ]
[train]
max_steps = 2
TOML
printf 'a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n1,1,x\n2,2,y\n' >"$tmp/table.csv"
sed "s#TABLE#$tmp/table.csv#" "$tmp/base.toml" >"$tmp/ok.toml"
# Each case gets a fresh --out: a failed run keeps its directory (with status "failed" in its store).
out() { mktemp -u "$tmp/run-XXXXXX"; }

expect_error unknown-key "did you mean 'train.lr'" \
  "$traindx" train "$tmp/ok.toml" --set train.lrr=0.1 --out "$(out)" -q
printf '[train]\nlearning_rate = 0.1\n' >"$tmp/unknown.toml"
expect_error unknown-key-in-file "unknown.toml:2: unknown key 'train.learning_rate'; did you mean 'train.lr'" "$traindx" train "$tmp/unknown.toml" --out "$(out)" -q
expect_error wrong-type "key 'train.batch_size' must be an integer" \
  "$traindx" train "$tmp/ok.toml" --set 'train.batch_size="big"' --out "$(out)" -q
expect_error bad-choice "closest: \"adam\"" "$traindx" train "$tmp/ok.toml" --set train.optimizer=adma --out "$(out)" -q
expect_error out-of-range "below the minimum" "$traindx" train "$tmp/ok.toml" --set train.lr=-1 --out "$(out)" -q
expect_error toml-syntax "TOML syntax error" bash -c "printf '[train\n' >'$tmp/syntax.toml'; '$traindx' train '$tmp/syntax.toml' --out '$tmp/r0' -q"
expect_error missing-config "cannot read config file" "$traindx" train "$tmp/nope.toml" --out "$(out)" -q
expect_error missing-csv "$tmp/missing.csv" "$traindx" train "$tmp/ok.toml" --set "data.path=\"$tmp/missing.csv\"" --out "$(out)" -q

printf 'a,b,label\n1,2,x\n3,4\n' >"$tmp/ragged.csv"
expect_error ragged-csv "line 3" "$traindx" train "$tmp/ok.toml" --set "data.path=\"$tmp/ragged.csv\"" --out "$(out)" -q
printf 'a,b,label\n1,2,0.5\n3,4,oops\n5,6,1.5\n' >"$tmp/text_target.csv"
expect_error non-numeric-target "line 3" "$traindx" train "$tmp/ok.toml" --set "data.path=\"$tmp/text_target.csv\"" \
  --set data.task=regression --out "$(out)" -q
expect_error unknown-target "closest" "$traindx" train "$tmp/ok.toml" --set data.target=lable --out "$(out)" -q

# A truncated IDX file: the first 1000 bytes of the real Fashion-MNIST training images.
mkdir -p "$tmp/idx"
gzip -dc /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz | head -c 1000 >"$tmp/idx/train-images-idx3-ubyte"
gzip -dc /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz >"$tmp/idx/train-labels-idx1-ubyte"
cp "$tmp/idx/train-labels-idx1-ubyte" "$tmp/idx/t10k-labels-idx1-ubyte"
cp "$tmp/idx/train-images-idx3-ubyte" "$tmp/idx/t10k-images-idx3-ubyte"
expect_error truncated-idx "train-images-idx3-ubyte" "$traindx" train "$src/examples/fashion_mlp.toml" \
  --set data.source=idx --set "data.path=\"$tmp/idx\"" --out "$(out)" -q

expect_error conv-on-table "model.layers[0]" "$traindx" train "$tmp/ok.toml" \
  --set 'model.layers=[{type="conv2d", out=4}]' --out "$(out)" -q
expect_error unknown-layer "did you mean 'linear'" "$traindx" train "$tmp/ok.toml" \
  --set 'model.layers=[{type="linaer", out=4}]' --out "$(out)" -q
expect_error bad-flag "--bogus" "$traindx" train "$tmp/ok.toml" --bogus
expect_error runs-show-unknown "traindx runs list" "$traindx" runs --root "$tmp" show nonexistent-run
expect_error ckpt-not-a-checkpoint "is not a checkpoint" "$traindx" ckpt verify "$tmp"

# The good config does run (exit 0), so the failures above are about the input.
if "$traindx" train "$tmp/ok.toml" --out "$tmp/good" --quiet >/dev/null 2>"$tmp/err"; then
  echo "ok   good-config runs"
else
  echo "FAIL good-config: $(cat "$tmp/err")"; failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then echo "$failures bad-input case(s) failed"; exit 1; fi
echo "all bad-input cases give exit 2 with a clear message"
