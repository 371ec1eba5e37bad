;; Joint logistic regression, trained by full-batch gradient descent over every party's rows.
;;
;; Host interface: the `veil` module (see veil_tee::workload and stats.wat).
;; Each input: little-endian f64 values: d (the number of features), then rows of d features
;; followed by the label (0 or 1). Every input must have the same d (1 ≤ d ≤ 64). Features
;; should be on comparable scales (standardized by the parties, as usual for gradient descent).
;; Output: d + 2 little-endian f64: the d weights, the bias, and the training accuracy.
;; Hyper-parameters: 500 epochs, learning rate 0.5.
(module
  (import "veil" "input_count" (func $input_count (result i32)))
  (import "veil" "input_len" (func $input_len (param i32) (result i32)))
  (import "veil" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "veil" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; exp(x) by range reduction x = k ln2 + r, |r| <= ln2/2, a degree-12 Taylor polynomial for
  ;; exp(r) (relative error < 1e-14), and 2^k built from the exponent bits.
  (func $exp (param $x f64) (result f64)
    (local $k f64) (local $r f64)
    (local.set $x (f64.min (f64.max (local.get $x) (f64.const -700)) (f64.const 700)))
    (local.set $k (f64.nearest (f64.mul (local.get $x) (f64.const 1.4426950408889634))))
    (local.set $r (f64.sub (local.get $x) (f64.mul (local.get $k) (f64.const 0.6931471805599453))))
    (f64.mul
      (f64.add (f64.const 1.0) (f64.mul (local.get $r)
      (f64.add (f64.const 1.0) (f64.mul (local.get $r)
      (f64.add (f64.const 0.5) (f64.mul (local.get $r)
      (f64.add (f64.const 0.16666666666666666) (f64.mul (local.get $r)
      (f64.add (f64.const 0.041666666666666664) (f64.mul (local.get $r)
      (f64.add (f64.const 0.008333333333333333) (f64.mul (local.get $r)
      (f64.add (f64.const 0.001388888888888889) (f64.mul (local.get $r)
      (f64.add (f64.const 0.0001984126984126984) (f64.mul (local.get $r)
      (f64.add (f64.const 2.48015873015873e-05) (f64.mul (local.get $r)
      (f64.add (f64.const 2.7557319223985893e-06) (f64.mul (local.get $r)
      (f64.add (f64.const 2.755731922398589e-07) (f64.mul (local.get $r)
      (f64.add (f64.const 2.505210838544172e-08) (f64.mul (local.get $r)
      (f64.const 2.08767569878681e-09)))))))))))))))))))))))))
      (f64.reinterpret_i64
        (i64.shl (i64.add (i64.trunc_f64_s (local.get $k)) (i64.const 1023)) (i64.const 52)))))

  (func $sigmoid (param $z f64) (result f64)
    (f64.div (f64.const 1) (f64.add (f64.const 1) (call $exp (f64.neg (local.get $z))))))

  ;; Layout: weights w[0..d) at 0, bias at 512; gradient g[0..d) at 1024, bias gradient at
  ;; 1536; header scratch at 2048; rows from 4096 on.
  (func (export "run") (result i32)
    (local $n i32) (local $i i32) (local $len i32) (local $total i32) (local $d i32)
    (local $di i32) (local $pages i32) (local $ptr i32) (local $end i32) (local $row i32)
    (local $j i32) (local $stride i32) (local $rows f64) (local $epoch i32)
    (local $z f64) (local $e f64) (local $p f64) (local $correct f64)

    (local.set $n (call $input_count))
    (if (i32.eqz (local.get $n)) (then (return (i32.const 3))))
    ;; Check the headers and sizes.
    (local.set $i (i32.const 0))
    (local.set $d (i32.const -1))
    (block $sizes_done
      (loop $sizes
        (br_if $sizes_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $len (call $input_len (local.get $i)))
        (if (i32.lt_s (local.get $len) (i32.const 8)) (then (return (i32.const 1))))
        (drop (call $input_read (local.get $i) (i32.const 2048) (i32.const 8)))
        (local.set $di (i32.trunc_sat_f64_s (f64.load (i32.const 2048))))
        (if (i32.or (i32.lt_s (local.get $di) (i32.const 1)) (i32.gt_s (local.get $di) (i32.const 64)))
          (then (return (i32.const 1))))
        (if (i32.eq (local.get $d) (i32.const -1)) (then (local.set $d (local.get $di))))
        (if (i32.ne (local.get $d) (local.get $di)) (then (return (i32.const 1))))
        (local.set $stride (i32.shl (i32.add (local.get $d) (i32.const 1)) (i32.const 3)))
        (if (i32.ne (i32.rem_u (i32.sub (local.get $len) (i32.const 8)) (local.get $stride)) (i32.const 0))
          (then (return (i32.const 1))))
        (local.set $total (i32.add (local.get $total) (i32.sub (local.get $len) (i32.const 8))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $sizes)))
    (local.set $pages
      (i32.shr_u (i32.add (i32.add (local.get $total) (i32.const 4104)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 2))))))
    ;; Copy each input's rows (after its 8-byte header) one after another: read the whole
    ;; input at the write position, then move the rows back over the header.
    (local.set $ptr (i32.const 4096))
    (local.set $i (i32.const 0))
    (block $read_done
      (loop $read
        (br_if $read_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $len (call $input_len (local.get $i)))
        (drop (call $input_read (local.get $i) (local.get $ptr) (local.get $len)))
        (memory.copy (local.get $ptr) (i32.add (local.get $ptr) (i32.const 8))
                     (i32.sub (local.get $len) (i32.const 8)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.sub (local.get $len) (i32.const 8))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $read)))
    (local.set $end (local.get $ptr))
    (local.set $rows (f64.convert_i32_u (i32.div_u (local.get $total) (local.get $stride))))
    (if (f64.eq (local.get $rows) (f64.const 0)) (then (return (i32.const 3))))

    ;; Gradient descent.
    (local.set $epoch (i32.const 0))
    (block $train_done
      (loop $train
        (br_if $train_done (i32.ge_u (local.get $epoch) (i32.const 500)))
        (memory.fill (i32.const 1024) (i32.const 0) (i32.const 520))
        (local.set $row (i32.const 4096))
        (block $rows_done
          (loop $rows_loop
            (br_if $rows_done (i32.ge_u (local.get $row) (local.get $end)))
            ;; z = bias + w . x
            (local.set $z (f64.load (i32.const 512)))
            (local.set $j (i32.const 0))
            (block $dot_done
              (loop $dot
                (br_if $dot_done (i32.ge_u (local.get $j) (local.get $d)))
                (local.set $z (f64.add (local.get $z)
                  (f64.mul (f64.load (i32.shl (local.get $j) (i32.const 3)))
                           (f64.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3)))))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $dot)))
            ;; e = sigmoid(z) - y
            (local.set $e (f64.sub (call $sigmoid (local.get $z))
              (f64.load (i32.add (local.get $row) (i32.shl (local.get $d) (i32.const 3))))))
            (local.set $j (i32.const 0))
            (block $g_done
              (loop $g
                (br_if $g_done (i32.ge_u (local.get $j) (local.get $d)))
                (f64.store (i32.add (i32.const 1024) (i32.shl (local.get $j) (i32.const 3)))
                  (f64.add (f64.load (i32.add (i32.const 1024) (i32.shl (local.get $j) (i32.const 3))))
                    (f64.mul (local.get $e)
                      (f64.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3)))))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $g)))
            (f64.store (i32.const 1536) (f64.add (f64.load (i32.const 1536)) (local.get $e)))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (br $rows_loop)))
        ;; w -= 0.5 * g / rows
        (local.set $j (i32.const 0))
        (block $u_done
          (loop $u
            (br_if $u_done (i32.ge_u (local.get $j) (local.get $d)))
            (f64.store (i32.shl (local.get $j) (i32.const 3))
              (f64.sub (f64.load (i32.shl (local.get $j) (i32.const 3)))
                (f64.mul (f64.const 0.5)
                  (f64.div (f64.load (i32.add (i32.const 1024) (i32.shl (local.get $j) (i32.const 3))))
                           (local.get $rows)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $u)))
        (f64.store (i32.const 512)
          (f64.sub (f64.load (i32.const 512))
            (f64.mul (f64.const 0.5) (f64.div (f64.load (i32.const 1536)) (local.get $rows)))))
        (local.set $epoch (i32.add (local.get $epoch) (i32.const 1)))
        (br $train)))

    ;; Training accuracy.
    (local.set $row (i32.const 4096))
    (block $acc_done
      (loop $acc
        (br_if $acc_done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $z (f64.load (i32.const 512)))
        (local.set $j (i32.const 0))
        (block $dot2_done
          (loop $dot2
            (br_if $dot2_done (i32.ge_u (local.get $j) (local.get $d)))
            (local.set $z (f64.add (local.get $z)
              (f64.mul (f64.load (i32.shl (local.get $j) (i32.const 3)))
                       (f64.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3)))))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $dot2)))
        (local.set $p (select (f64.const 1) (f64.const 0) (f64.ge (local.get $z) (f64.const 0))))
        (if (f64.eq (local.get $p)
              (f64.load (i32.add (local.get $row) (i32.shl (local.get $d) (i32.const 3)))))
          (then (local.set $correct (f64.add (local.get $correct) (f64.const 1)))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $acc)))

    ;; Output: weights, bias, accuracy — laid out contiguously at 2048.
    (memory.copy (i32.const 2048) (i32.const 0) (i32.shl (local.get $d) (i32.const 3)))
    (f64.store (i32.add (i32.const 2048) (i32.shl (local.get $d) (i32.const 3))) (f64.load (i32.const 512)))
    (f64.store (i32.add (i32.const 2056) (i32.shl (local.get $d) (i32.const 3)))
      (f64.div (local.get $correct) (local.get $rows)))
    (drop (call $output_write (i32.const 2048)
      (i32.shl (i32.add (local.get $d) (i32.const 2)) (i32.const 3))))
    (i32.const 0))
)
