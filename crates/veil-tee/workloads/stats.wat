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
    (local $min f64) (local $max f64) (local $bin i32) (local $width f64)

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

    ;; Pass 1: count, sum, min, max.
    (local.set $min (f64.const inf))
    (local.set $max (f64.const -inf))
    (local.set $ptr (i32.const 1024))
    (block $p1_done
      (loop $p1
        (br_if $p1_done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $x (f64.load (local.get $ptr)))
        (local.set $count (f64.add (local.get $count) (f64.const 1)))
        (local.set $sum (f64.add (local.get $sum) (local.get $x)))
        (local.set $min (f64.min (local.get $min) (local.get $x)))
        (local.set $max (f64.max (local.get $max) (local.get $x)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
        (br $p1)))
    (if (f64.eq (local.get $count) (f64.const 0))
      (then (return (i32.const 3))))
    (local.set $mean (f64.div (local.get $sum) (local.get $count)))

    ;; Pass 2: squared deviations (two-pass variance) and the histogram.
    (local.set $width (f64.sub (local.get $max) (local.get $min)))
    (local.set $ptr (i32.const 1024))
    (block $p2_done
      (loop $p2
        (br_if $p2_done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $x (f64.load (local.get $ptr)))
        (local.set $ss
          (f64.add (local.get $ss)
            (f64.mul (f64.sub (local.get $x) (local.get $mean))
                     (f64.sub (local.get $x) (local.get $mean)))))
        (local.set $bin (i32.const 0))
        (if (f64.gt (local.get $width) (f64.const 0))
          (then
            (local.set $bin
              (i32.trunc_f64_u
                (f64.floor
                  (f64.mul (f64.div (f64.sub (local.get $x) (local.get $min)) (local.get $width))
                           (f64.const 10)))))
            (if (i32.gt_u (local.get $bin) (i32.const 9))
              (then (local.set $bin (i32.const 9))))))
        ;; histogram[bin] += 1 (bins at offsets 40 .. 120)
        (f64.store
          (i32.add (i32.const 40) (i32.shl (local.get $bin) (i32.const 3)))
          (f64.add
            (f64.load (i32.add (i32.const 40) (i32.shl (local.get $bin) (i32.const 3))))
            (f64.const 1)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
        (br $p2)))

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
