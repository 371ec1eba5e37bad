;; Joint statistics over the parties' numeric columns.
;;
;; Host interface (module "veil", see veil_tee::workload):
;;   input_count() -> i32                     number of inputs (one per party upload)
;;   input_len(i) -> i32                      byte length of input i
;;   input_read(i, ptr, len) -> i32           copies input i to memory[ptr..ptr+len]
;;   output_write(ptr, len) -> i32            appends memory[ptr..ptr+len] to the output
;; Each input is a column of little-endian f64 values.
;; Output: 15 little-endian f64: count, mean, sample variance, min, max, then a 10-bin
;; histogram (counts) over [min, max].
(module
  (import "veil" "input_count" (func $input_count (result i32)))
  (import "veil" "input_len" (func $input_len (param i32) (result i32)))
  (import "veil" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "veil" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; Layout: [0, 120) output record; [1024, 1024 + total) the concatenated inputs.
  (func (export "run") (result i32)
    (local $n i32) (local $i i32) (local $len i32) (local $total i32) (local $pages i32)
    (local $ptr i32) (local $end i32)
    (local $x f64) (local $count f64) (local $sum f64) (local $mean f64) (local $ss f64)
    (local $min f64) (local $max f64) (local $bin i32) (local $width f64) (local $scale f64)
    (local $d f64) (local $end4 i32)

    ;; Total input size; every input must be whole f64s.
    (local.set $n (call $input_count))
    (local.set $i (i32.const 0))
    (block $done
      (loop $sizes
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $len (call $input_len (local.get $i)))
        (if (i32.ne (i32.and (local.get $len) (i32.const 7)) (i32.const 0))
          (then (return (i32.const 1))))
        (local.set $total (i32.add (local.get $total) (local.get $len)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $sizes)))

    ;; Grow memory to hold the inputs after the 1 KiB header.
    (local.set $pages
      (i32.shr_u (i32.add (i32.add (local.get $total) (i32.const 1024)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 2))))))

    ;; Read the inputs one after another.
    (local.set $ptr (i32.const 1024))
    (local.set $i (i32.const 0))
    (block $read_done
      (loop $read
        (br_if $read_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $len (call $input_len (local.get $i)))
        (drop (call $input_read (local.get $i) (local.get $ptr) (local.get $len)))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $len)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $read)))
    (local.set $end (local.get $ptr))

    ;; The loops below handle four values per iteration, in order (so sums are added in the
    ;; same order as a plain loop), without branches in the body: fuel is metered per basic
    ;; block and checked per iteration, so fewer, longer iterations cost less metering. The
    ;; tail loops take the last 0-3 values.
    (local.set $end4 (i32.sub (local.get $end) (i32.and (i32.sub (local.get $end) (i32.const 1024)) (i32.const 31))))

    ;; Pass 1: count, sum, min, max (compare-and-select: cheaper than f64.min/f64.max, whose
    ;; NaN rules cost extra instructions; inputs are finite numbers).
    (local.set $min (f64.const inf))
    (local.set $max (f64.const -inf))
    (local.set $ptr (i32.const 1024))
    (block $p1_done
      (loop $p1
        (br_if $p1_done (i32.ge_u (local.get $ptr) (local.get $end4)))
        (local.set $x (f64.load offset=0 (local.get $ptr)))
        (local.set $sum (f64.add (local.get $sum) (local.get $x)))
        (local.set $min (select (local.get $x) (local.get $min) (f64.lt (local.get $x) (local.get $min))))
        (local.set $max (select (local.get $x) (local.get $max) (f64.gt (local.get $x) (local.get $max))))
        (local.set $x (f64.load offset=8 (local.get $ptr)))
        (local.set $sum (f64.add (local.get $sum) (local.get $x)))
        (local.set $min (select (local.get $x) (local.get $min) (f64.lt (local.get $x) (local.get $min))))
        (local.set $max (select (local.get $x) (local.get $max) (f64.gt (local.get $x) (local.get $max))))
        (local.set $x (f64.load offset=16 (local.get $ptr)))
        (local.set $sum (f64.add (local.get $sum) (local.get $x)))
        (local.set $min (select (local.get $x) (local.get $min) (f64.lt (local.get $x) (local.get $min))))
        (local.set $max (select (local.get $x) (local.get $max) (f64.gt (local.get $x) (local.get $max))))
        (local.set $x (f64.load offset=24 (local.get $ptr)))
        (local.set $sum (f64.add (local.get $sum) (local.get $x)))
        (local.set $min (select (local.get $x) (local.get $min) (f64.lt (local.get $x) (local.get $min))))
        (local.set $max (select (local.get $x) (local.get $max) (f64.gt (local.get $x) (local.get $max))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 32)))
        (br $p1)))
    (block $t1_done
      (loop $t1
        (br_if $t1_done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $x (f64.load offset=0 (local.get $ptr)))
        (local.set $sum (f64.add (local.get $sum) (local.get $x)))
        (local.set $min (select (local.get $x) (local.get $min) (f64.lt (local.get $x) (local.get $min))))
        (local.set $max (select (local.get $x) (local.get $max) (f64.gt (local.get $x) (local.get $max))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
        (br $t1)))
    (local.set $count (f64.convert_i32_u (i32.shr_u (i32.sub (local.get $end) (i32.const 1024)) (i32.const 3))))
    (if (f64.eq (local.get $count) (f64.const 0))
      (then (return (i32.const 3))))
    (local.set $mean (f64.div (local.get $sum) (local.get $count)))

    ;; Pass 2: squared deviations (two-pass variance) and the histogram:
    ;; bin = min(floor((x - min) * 10 / width), 9). The value is never negative, so the
    ;; saturating truncation is the floor (and 0 when all values are equal: scale = 0).
    ;; Bins are f64 counts at offsets 40 .. 120.
    (local.set $width (f64.sub (local.get $max) (local.get $min)))
    (if (f64.gt (local.get $width) (f64.const 0))
      (then (local.set $scale (f64.div (f64.const 10) (local.get $width)))))
    (local.set $ptr (i32.const 1024))
    (block $p2_done
      (loop $p2
        (br_if $p2_done (i32.ge_u (local.get $ptr) (local.get $end4)))
        (local.set $x (f64.load offset=0 (local.get $ptr)))
        (local.set $d (f64.sub (local.get $x) (local.get $mean)))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $d) (local.get $d))))
        (local.set $bin
          (i32.trunc_sat_f64_u (f64.mul (f64.sub (local.get $x) (local.get $min)) (local.get $scale))))
        (local.set $bin (i32.shl (select (i32.const 9) (local.get $bin) (i32.gt_u (local.get $bin) (i32.const 9))) (i32.const 3)))
        (f64.store offset=40 (local.get $bin)
          (f64.add (f64.load offset=40 (local.get $bin)) (f64.const 1)))
        (local.set $x (f64.load offset=8 (local.get $ptr)))
        (local.set $d (f64.sub (local.get $x) (local.get $mean)))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $d) (local.get $d))))
        (local.set $bin
          (i32.trunc_sat_f64_u (f64.mul (f64.sub (local.get $x) (local.get $min)) (local.get $scale))))
        (local.set $bin (i32.shl (select (i32.const 9) (local.get $bin) (i32.gt_u (local.get $bin) (i32.const 9))) (i32.const 3)))
        (f64.store offset=40 (local.get $bin)
          (f64.add (f64.load offset=40 (local.get $bin)) (f64.const 1)))
        (local.set $x (f64.load offset=16 (local.get $ptr)))
        (local.set $d (f64.sub (local.get $x) (local.get $mean)))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $d) (local.get $d))))
        (local.set $bin
          (i32.trunc_sat_f64_u (f64.mul (f64.sub (local.get $x) (local.get $min)) (local.get $scale))))
        (local.set $bin (i32.shl (select (i32.const 9) (local.get $bin) (i32.gt_u (local.get $bin) (i32.const 9))) (i32.const 3)))
        (f64.store offset=40 (local.get $bin)
          (f64.add (f64.load offset=40 (local.get $bin)) (f64.const 1)))
        (local.set $x (f64.load offset=24 (local.get $ptr)))
        (local.set $d (f64.sub (local.get $x) (local.get $mean)))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $d) (local.get $d))))
        (local.set $bin
          (i32.trunc_sat_f64_u (f64.mul (f64.sub (local.get $x) (local.get $min)) (local.get $scale))))
        (local.set $bin (i32.shl (select (i32.const 9) (local.get $bin) (i32.gt_u (local.get $bin) (i32.const 9))) (i32.const 3)))
        (f64.store offset=40 (local.get $bin)
          (f64.add (f64.load offset=40 (local.get $bin)) (f64.const 1)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 32)))
        (br $p2)))
    (block $t2_done
      (loop $t2
        (br_if $t2_done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $x (f64.load offset=0 (local.get $ptr)))
        (local.set $d (f64.sub (local.get $x) (local.get $mean)))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $d) (local.get $d))))
        (local.set $bin
          (i32.trunc_sat_f64_u (f64.mul (f64.sub (local.get $x) (local.get $min)) (local.get $scale))))
        (local.set $bin (i32.shl (select (i32.const 9) (local.get $bin) (i32.gt_u (local.get $bin) (i32.const 9))) (i32.const 3)))
        (f64.store offset=40 (local.get $bin)
          (f64.add (f64.load offset=40 (local.get $bin)) (f64.const 1)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
        (br $t2)))

    (f64.store (i32.const 0) (local.get $count))
    (f64.store (i32.const 8) (local.get $mean))
    (f64.store (i32.const 16)
      (if (result f64) (f64.gt (local.get $count) (f64.const 1))
        (then (f64.div (local.get $ss) (f64.sub (local.get $count) (f64.const 1))))
        (else (f64.const 0))))
    (f64.store (i32.const 24) (local.get $min))
    (f64.store (i32.const 32) (local.get $max))
    (drop (call $output_write (i32.const 0) (i32.const 120)))
    (i32.const 0))
)
